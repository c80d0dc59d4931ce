// TTstack's agent API as the controller calls it, whatever serves it (a Corral daemon, a TTstack agent):
// every answer is read as TTstack's envelope and its data checked against the shape the caller expects, so
// that a host answering something else (HTML, garbage, another shape, a 500) is a clear `host_bad_answer`
// naming the host, the call and what was wrong, never an exception deep in the controller or a half-written
// record. A refusal the host explains (an envelope with `ok: false` and a 4xx) becomes a CorralApiError with
// the host's status, its message, and its code (Corral's, or one the status implies for TTstack's agent,
// whose errors carry none).
import type { TSchema } from "@sinclair/typebox";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { Agent, request, type Dispatcher } from "undici";
import { CorralError, isErrorCode, quote, type ErrorCode } from "../../protocol/errors.ts";
import { CorralApiError } from "../../sdk/transport.ts";

/** Reads must not hang a heartbeat on a dead host. */
export const READ_TIMEOUT_MS = 5000;
/** Creates and power changes wait for QEMU. */
export const CHANGE_TIMEOUT_MS = 120_000;

export interface AgentAddress {
  /** http://HOST:PORT */
  uri: string;
  /** Sent as `Authorization: Bearer TOKEN`; undefined: no header. */
  token: string | undefined;
}

export interface CallOptions {
  body?: unknown;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A host's answer the controller cannot use (502 `host_bad_answer`). */
export function badAnswer(host: string, call: string, what: string): CorralError {
  return new CorralError("host_bad_answer", `Host ${quote(host)} answered ${call} with ${what}`);
}

/** The code a refusal's status implies when the host gave none (TTstack's agent never does). */
function impliedCode(status: number, path: string): ErrorCode {
  if (status === 404) return path.startsWith("/api/vms/") ? "vm_not_found" : "not_found";
  if (status === 401) return "unauthorized";
  if (status === 409) return "conflict";
  if (status === 413) return "payload_too_large";
  // TTstack's agent answers 422 (axum's) to a body it cannot read as its request type.
  if (status === 422) return "invalid_request";
  if (status === 429) return "hostgroup_full";
  return "invalid_request";
}

const ajv = new Ajv({ allErrors: false, strict: false, coerceTypes: false });
const checks = new WeakMap<TSchema, ValidateFunction>();

function check(schema: TSchema): ValidateFunction {
  let fn = checks.get(schema);
  if (!fn) {
    fn = ajv.compile(schema);
    checks.set(schema, fn);
  }
  return fn;
}

/** "data.resource.cpu_total must be integer, got \"two\"" from the first error. */
function describeFirst(errors: readonly ErrorObject[] | null | undefined, data: unknown): string {
  const first = errors?.[0];
  if (!first) return "data of another shape";
  const parts = first.instancePath.split("/").slice(1);
  let path = "data";
  let value: unknown = data;
  for (const part of parts) {
    path += /^\d+$/.test(part) ? `[${part}]` : `.${part}`;
    value = (value as Record<string, unknown> | undefined)?.[part];
  }
  if (first.keyword === "required") return `${path}.${String(first.params.missingProperty)} missing`;
  const allowed = first.keyword === "enum" ? ` (one of ${(first.params.allowedValues as unknown[]).map((v) => quote(v)).join(", ")})` : "";
  return `${path} that ${first.message ?? "is not allowed"}${allowed}, got ${quote(value)}`;
}

function snippet(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return quote(flat.length > 80 ? `${flat.slice(0, 80)}…` : flat);
}

export class AgentApi {
  private readonly dispatcher: Dispatcher;
  private readonly origin: string;

  constructor(
    /** How messages name the host: its id, or its address before it has one. */
    readonly name: string,
    private readonly address: AgentAddress,
    private readonly defaultTimeoutMs: number,
  ) {
    this.origin = new URL(address.uri).origin;
    this.dispatcher = new Agent({ keepAliveTimeout: 10_000 });
  }

  close(): Promise<void> {
    return this.dispatcher.close();
  }

  /** A success whose `data` has the shape `schema` describes; that data. */
  async data<T>(method: Dispatcher.HttpMethod, path: string, schema: TSchema, options: CallOptions = {}): Promise<T> {
    const call = `${method} ${path}`;
    const envelope = await this.call(method, path, options);
    if (!("data" in envelope) || envelope.data === null || envelope.data === undefined) throw badAnswer(this.name, call, "no data");
    const fn = check(schema);
    if (!fn(envelope.data)) throw badAnswer(this.name, call, describeFirst(fn.errors, envelope.data));
    return envelope.data as T;
  }

  /** A success, whatever data it carries (TTstack answers `{"ok":true}`). */
  async done(method: Dispatcher.HttpMethod, path: string, options: CallOptions = {}): Promise<void> {
    await this.call(method, path, options);
  }

  /** Sends the request; the envelope of a 2xx, or the host's refusal or failure thrown. */
  private async call(method: Dispatcher.HttpMethod, path: string, options: CallOptions): Promise<{ ok: true; data?: unknown }> {
    const call = `${method} ${path}`;
    const headers: Record<string, string> = { "user-agent": "corral-controller" };
    if (this.address.token) headers.authorization = `Bearer ${this.address.token}`;
    if (options.body !== undefined) headers["content-type"] = "application/json";
    const timeout = options.timeoutMs ?? this.defaultTimeoutMs;
    const response = await request(`${this.origin}${path}`, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      dispatcher: this.dispatcher,
      signal: options.signal,
      headersTimeout: timeout,
      bodyTimeout: timeout,
    });
    const text = await response.body.text();
    let parsed: unknown;
    try {
      parsed = text === "" ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const body = (typeof parsed === "object" && parsed !== null ? parsed : {}) as { ok?: unknown; error?: unknown; code?: unknown; data?: unknown };
    if (response.statusCode >= 400) {
      const message = typeof body.error === "string" ? body.error : text === "" ? `HTTP ${response.statusCode}` : `HTTP ${response.statusCode}: ${snippet(text)}`;
      const code = isErrorCode(body.code) ? body.code : response.statusCode >= 500 ? "unknown" : impliedCode(response.statusCode, path);
      throw new CorralApiError(response.statusCode, code, message, method, path);
    }
    if (parsed === undefined) throw badAnswer(this.name, call, text === "" ? `${response.statusCode} and no body` : `something that is not JSON: ${snippet(text)}`);
    if (typeof body.ok !== "boolean") throw badAnswer(this.name, call, `JSON that is not TTstack's envelope {"ok", "data"}: ${snippet(text)}`);
    if (!body.ok) throw badAnswer(this.name, call, `a ${response.statusCode} that says it failed: ${typeof body.error === "string" ? body.error : snippet(text)}`);
    return body as { ok: true; data?: unknown };
  }
}
