// Requests a fuzzer sends, generated from a server's route table with a seeded generator (the same seed gives
// the same requests): each route's method and path with hostile path parameters, query strings with wrong
// types and repeated keys, bodies that are not JSON or are JSON of the wrong shape (nulls, deep nesting, huge
// numbers, extra fields), odd headers. Pure: sending them is the test's business.
import type { RouteEntry } from "../../src/http/route-table.ts";

/** mulberry32: small, fast, and the same sequence for the same seed on every machine. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
  /** Whether it carries the right token. */
  authorized: boolean;
  /** What it was made of, for the failure message. */
  recipe: string[];
}

/** Path segment values that have broken servers: traversal, NUL, unicode, long, numeric, empty, reserved. */
export const HOSTILE_SEGMENTS = [
  "..",
  "%2e%2e",
  "..%2f..%2fetc%2fpasswd",
  "%00",
  "a%00b",
  "%",
  "%zz",
  "%C0%AE",
  "☃",
  "é",
  "%F0%9F%92%A9",
  "x".repeat(300),
  "0",
  "-1",
  "1e999",
  "99999999999999999999",
  "",
  "%20",
  "a b",
  "UPPER",
  "a;b",
  "a,b",
  "a%2Fb",
  "__proto__",
  "constructor",
  "null",
  "$(id)",
  "'--",
  "<x>",
  "fz-none",
] as const;

/** Query values a route may accept, by parameter name, so that requests also get past validation. */
const PLAUSIBLE_QUERY: Record<string, readonly string[]> = {
  path: ["/", "/tmp", "/etc/hostname", "/proc/self/status", "~", "tmp/fuzz", "/nonexistent/x", "/dev/zero", "/run/corral/secrets"],
  cmd: ["true", "echo", "uname", "cat", "ls"],
  args: ["-a", "/", "hello"],
  mode: ["binary", "tar", "cp-v1-tar", "cp-v1-binary", "cp-v1-recursive", "zip"],
  lines: ["1", "10", "0"],
  follow: ["true", "false"],
  timeout: ["1s", "100ms"],
  wait: ["agent", "userdata", "1s", "false"],
  recursive: ["true", "false"],
  buffered: ["true"],
  stdio: ["base64", "text"],
  tag: ["a", "fz"],
  tag_prefix: ["f"],
};

/** Query values: wrong types for whatever the route expects. */
const HOSTILE_QUERY = [
  "",
  "abc",
  "-1",
  "0",
  "1.5",
  "1e309",
  "99999999999999999999",
  "true",
  "false",
  "null",
  "[]",
  "{}",
  "%00",
  "☃",
  "x".repeat(5000),
  "1s",
  "-5m",
  "24h1s",
  "0x10",
  " 1 ",
] as const;

/** What an HTTP client will send: bytes outside printable ASCII and spaces percent-encoded, the rest as is. */
function sendable(segment: string): string {
  return [...segment].map((c) => (/^[\x21-\x7e]$/.test(c) ? c : encodeURIComponent(c))).join("");
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

function deep(levels: number, kind: "array" | "object"): string {
  return kind === "array" ? `${"[".repeat(levels)}${"]".repeat(levels)}` : `${'{"a":'.repeat(levels)}1${"}".repeat(levels)}`;
}

export class FuzzGenerator {
  private readonly random: () => number;

  constructor(
    readonly seed: number,
    /** Real values a path parameter may take on requests that only read (the VM, the host), by name. */
    private readonly realParams: Record<string, string> = {},
  ) {
    this.random = seededRandom(seed);
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)] as T;
  }

  private chance(p: number): boolean {
    return this.random() < p;
  }

  private hostileJson(depth = 0): Json {
    const choices: (() => Json)[] = [
      () => null,
      () => true,
      () => 0,
      () => -1,
      () => 1e308,
      () => -1e308,
      () => 2 ** 53 + 1,
      () => 0.5,
      () => "",
      () => "x".repeat(this.chance(0.1) ? 100_000 : 300),
      () => "☃\u0000\u202e",
      () => "../../etc/passwd",
      () => "1s",
      () => [],
      () => ({}),
      () => (depth < 3 ? [this.hostileJson(depth + 1), this.hostileJson(depth + 1)] : []),
      () => (depth < 3 ? { [this.pick(["a", "__proto__", "constructor", ""])]: this.hostileJson(depth + 1) } : {}),
    ];
    return this.pick(choices)();
  }

  private propertiesOf(schema: unknown): string[] {
    const properties = (schema as { properties?: Record<string, unknown> } | undefined)?.properties;
    return properties ? Object.keys(properties) : [];
  }

  private pathFor(route: RouteEntry, method: string, recipe: string[]): string {
    // Real names only where nothing is changed or removed (and exec, which runs a hostile command line).
    const readOnly = method === "GET" || method === "HEAD" || (method === "POST" && /\/exec$/.test(route.url));
    return route.url
      .replace(/:([A-Za-z_]+)/g, (_match, name: string) => {
        const real = this.realParams[name];
        const value = real !== undefined && readOnly && this.chance(0.5) ? real : this.pick(HOSTILE_SEGMENTS);
        recipe.push(`param ${name}=${JSON.stringify(value.length > 40 ? `${value.slice(0, 20)}…(${value.length})` : value)}`);
        return sendable(value);
      })
      .replace(/\*$/, () => this.pick(["", "assets/x.js", "hosts/h1", "..%2f..%2fetc", "%00", "index.html"]));
  }

  private queryFor(route: RouteEntry, recipe: string[]): string {
    if (this.chance(0.25)) return "";
    const known = this.propertiesOf(route.schema?.querystring);
    // A third of the time only the route's own parameters, with values it may accept: past validation, into
    // the handler (and the guest).
    if (this.chance(0.35)) {
      const parts = known.filter((name) => PLAUSIBLE_QUERY[name] && this.chance(0.6)).map((name) => `${name}=${encodeURIComponent(this.pick(PLAUSIBLE_QUERY[name] ?? []))}`);
      recipe.push(`plausible query ${parts.join("&")}`);
      return parts.length > 0 ? `?${parts.join("&")}` : "";
    }
    const names = [...known, "token", "__proto__", "x[y]", "", "follow", "timeout", "wait"];
    const parts: string[] = [];
    const count = 1 + Math.floor(this.random() * 4);
    for (let i = 0; i < count; i++) {
      const name = this.pick(names);
      const plausible = PLAUSIBLE_QUERY[name];
      const value = plausible && this.chance(0.6) ? this.pick(plausible) : this.pick(HOSTILE_QUERY);
      parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(value)}`);
      // The same key again, as a list would be sent.
      if (this.chance(0.2)) parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(this.pick(HOSTILE_QUERY))}`);
    }
    recipe.push(`query ${parts.join("&").slice(0, 120)}`);
    return `?${parts.join("&")}`;
  }

  private bodyFor(route: RouteEntry, recipe: string[]): { body?: string | Buffer; contentType?: string } {
    const kinds = ["none", "empty", "not json", "json scalar", "schema-shaped", "schema-shaped", "schema-shaped", "deep", "huge", "binary"] as const;
    const kind = this.pick(kinds);
    recipe.push(`body ${kind}`);
    const contentType = this.pick([
      "application/json",
      "application/json",
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/json; charset=utf-16",
      "application/octet-stream",
      "a/b/c",
      "",
    ]);
    switch (kind) {
      case "none":
        return {};
      case "empty":
        return { body: "", contentType };
      case "not json":
        return { body: this.pick(["{", "nul", "{'a':1}", "a=1&b=2", "\u0000", '{"a":1}}', "[1,]", "--x\r\nContent-Disposition: form-data\r\n\r\n1\r\n--x--"]), contentType };
      case "json scalar":
        return { body: JSON.stringify(this.pick([null, 1, -1, "s", true, [], 1e308])), contentType };
      case "schema-shaped": {
        const body: Record<string, Json> = {};
        for (const name of this.propertiesOf(route.schema?.body)) if (this.chance(0.7)) body[name] = this.hostileJson();
        if (this.chance(0.3)) body[this.pick(["extra", "__proto__", "constructor", "prototype"])] = this.hostileJson();
        const text = JSON.stringify(body);
        return { body: this.chance(0.1) ? text.replace("{", '{"__proto__":{"polluted":1},') : text, contentType };
      }
      case "deep":
        return { body: deep(this.pick([64, 1000, 20_000]), this.pick(["array", "object"] as const)), contentType };
      case "huge":
        return { body: `"${"x".repeat(1024 * 1024 + 16)}"`, contentType };
      case "binary": {
        const bytes = Buffer.alloc(256);
        for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(this.random() * 256);
        return { body: bytes, contentType };
      }
    }
  }

  /** One request for `route`, with the token (or, sometimes, a wrong one or none). */
  next(route: RouteEntry, token: string): FuzzRequest {
    const recipe: string[] = [];
    const method = this.chance(0.05) ? this.pick(["PUT", "PATCH", "OPTIONS", "DELETE", "POST"]) : route.method;
    const path = this.pathFor(route, method, recipe) + this.queryFor(route, recipe);
    const headers: Record<string, string> = {};
    const auth = this.random();
    const authorized = auth < 0.9;
    if (authorized) headers.authorization = `Bearer ${token}`;
    else if (auth < 0.95) headers.authorization = this.pick(["Bearer ", "Bearer wrong", `Basic ${token}`, `bearer ${token}x`]);
    if (this.chance(0.3)) headers.accept = this.pick(["*/*", "text/html", "application/x-tar", "application/octet-stream", "application/json;q=0", "garbage"]);
    if (this.chance(0.1))
      headers[this.pick(["x-forwarded-for", "x-real-ip", "forwarded", "x-http-method-override", "origin", "range", "if-none-match"])] = this.pick(
        ["", "127.0.0.1", "PUT", "bytes=0-1", "null", "☃".normalize()].map((v) => (/^[\x20-\x7e]*$/.test(v) ? v : "x")),
      );
    let body: string | Buffer | undefined;
    if (method !== "GET" && method !== "HEAD") {
      const made = this.bodyFor(route, recipe);
      body = made.body;
      if (made.contentType) headers["content-type"] = made.contentType;
      if (body !== undefined && this.chance(0.05)) headers["content-encoding"] = this.pick(["gzip", "br", "identity", "x"]);
    }
    return {
      method,
      path,
      headers,
      body,
      authorized,
      recipe: [
        `${method} ${path.length > 200 ? `${path.slice(0, 200)}…` : path}`,
        ...recipe,
        `headers ${JSON.stringify({ ...headers, authorization: headers.authorization ? "…" : undefined })}`,
      ],
    };
  }
}
