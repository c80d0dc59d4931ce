// Access control of both servers, route by route: a real daemon (auth on, a unix socket too) and a real
// controller (an API key) started in this process, so that every route they register is read from their
// route tables (fastify's onRoute: every method, WebSocket routes included). Each protected route answers
// 401 without the token and with a wrong one, and none of the forms that once walked around a check on the
// raw URL gets through: percent-escapes of letters and of "/", an absolute-form target, trailing and doubled
// slashes, case, dot segments, ";" parameters, the key in the query where the route does not take it; each
// also as a WebSocket upgrade, sent over raw sockets since HTTP clients would normalise them.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { RunningDaemon } from "../../src/daemon/daemon.ts";
import { PUBLIC_ROUTES, type ServerRole } from "../../src/http/access.ts";
import type { RouteEntry } from "../../src/http/route-table.ts";
import { startInProcess, type InProcessServers } from "../helpers/in-process.ts";
import { endpointOf, plainRequest, rawRequest, upgradeRequest, type RawAnswer, type RawEndpoint } from "../helpers/raw-http.ts";

const WRONG = "wrong-token-0123456789abcdef";

/** A concrete path for a route pattern: parameters get a plausible value that names nothing. */
function concrete(url: string): string {
  return url.replace(/:[A-Za-z_]+/g, "zz-none").replace(/\*$/, "zz-none");
}

function percent(char: string, upper = false): string {
  const hex = char.charCodeAt(0).toString(16).padStart(2, "0");
  return `%${upper ? hex.toUpperCase() : hex}`;
}

interface Form {
  name: string;
  target: string;
}

/** The ways to spell `path` that a check on the raw URL would not recognise but a router might. */
export function bypassForms(path: string, options: { queryToken?: string } = {}): Form[] {
  const segments = path.slice(1).split("/");
  const first = segments[0] ?? "";
  const rest = segments.slice(1).join("/");
  const tail = rest ? `/${rest}` : "";
  const forms: Form[] = [
    { name: "as is", target: path },
    { name: "percent-encoded first letter", target: `/${percent(first[0] ?? "a")}${first.slice(1)}${tail}` },
    { name: "percent-encoded last letter, upper-case hex", target: `${path.slice(0, -1)}${percent(path.at(-1) ?? "a", true)}` },
    { name: "every character percent-encoded", target: `/${segments.map((s) => [...s].map((c) => percent(c)).join("")).join("/")}` },
    { name: "absolute form", target: `http://x${path}` },
    { name: "absolute form, upper-case scheme and a port", target: `HTTP://localhost:1${path}` },
    { name: "trailing slash", target: `${path}/` },
    { name: "doubled leading slash", target: `/${path}` },
    { name: "upper case", target: path.toUpperCase() },
    { name: "first segment capitalised", target: `/${first.charAt(0).toUpperCase()}${first.slice(1)}${tail}` },
    { name: "dot-dot segment", target: `/x/..${path}` },
    { name: "encoded dot-dot segment", target: `/x/%2e%2e${path}` },
    { name: "dot segment", target: `/.${path}` },
    { name: "semicolon parameter at the end", target: `${path};x=1` },
    { name: "semicolon parameter in the first segment", target: `/${first};x${tail}` },
    { name: "encoded NUL at the end", target: `${path}%00` },
  ];
  if (rest) {
    forms.push(
      { name: "encoded slash", target: `/${first}%2F${rest}` },
      { name: "encoded slash, lower-case", target: `/${first}%2f${rest}` },
      { name: "doubled inner slash", target: `/${first}//${rest}` },
      { name: "inner dot segment", target: `/${first}/.${tail}` },
    );
  }
  if (options.queryToken !== undefined) forms.push({ name: "key in the query", target: `${path}?token=${encodeURIComponent(options.queryToken)}` });
  return forms;
}

interface Server {
  role: ServerRole;
  endpoint: RawEndpoint;
  routes: readonly RouteEntry[];
  token: string;
}

function describeAnswer(answer: RawAnswer): string {
  return `${answer.status} ${answer.body.slice(0, 200)}`;
}

/** Nothing but a refusal: 401 with the catalogue's body (or a 400 for a path the router cannot take). */
function assertRefused(answer: RawAnswer, what: string): void {
  assert.ok(answer.status === 401 || answer.status === 400, `${what}: expected 401, got ${describeAnswer(answer)}`);
  const body = JSON.parse(answer.body) as { error?: unknown; code?: unknown };
  assert.equal(typeof body.error, "string", `${what}: ${answer.body}`);
  if (answer.status === 401) assert.equal(body.code, "unauthorized", what);
  else assert.equal(body.code, "invalid_request", what);
}

function request(method: string, target: string, headers: Record<string, string> = {}): string {
  return plainRequest(method, target, method === "GET" || method === "HEAD" ? headers : { ...headers, "content-length": "0" });
}

describe("access control on the routed path, both servers", { timeout: 600_000 }, () => {
  let running: InProcessServers;
  let daemon: RunningDaemon;
  let servers: Server[];
  let API_KEY: string;

  before(async () => {
    running = await startInProcess();
    daemon = running.daemon;
    API_KEY = running.apiKey;
    servers = [
      { role: "daemon", endpoint: endpointOf(daemon.url), routes: daemon.app.routeTable, token: running.token },
      { role: "controller", endpoint: endpointOf(running.controller.url), routes: running.controller.app.routeTable, token: API_KEY },
    ];
  });

  after(() => running?.stop());

  test("the route tables hold every route, WebSockets included", () => {
    const keys = (role: ServerRole): string[] => (servers.find((s) => s.role === role)?.routes ?? []).map((r) => `${r.method} ${r.url}${r.websocket ? " (ws)" : ""}`);
    for (const expected of ["GET /healthz", "GET /vm/:hostname/shell (ws)", "GET /vm/:hostname/forward (ws)", "POST /vm/:hostname/exec", "HEAD /healthz", "GET /openapi.json"]) {
      assert.ok(keys("daemon").includes(expected), `daemon: ${expected}`);
    }
    for (const expected of ["GET /ws (ws)", "GET /api/hosts/:hostId/vms/:vmName/shell (ws)", "POST /api/hosts", "GET /*", "GET /healthz", "GET /openapi.json"]) {
      assert.ok(keys("controller").includes(expected), `controller: ${expected}`);
    }
    assert.ok(keys("daemon").length > 50, `the daemon has ${keys("daemon").length} routes`);
  });

  test("the public routes are exactly PUBLIC_ROUTES, and answer without a token", async () => {
    for (const server of servers) {
      const declared = new Set(server.routes.filter((r) => r.access === "public" && r.method !== "HEAD").map((r) => `${r.method} ${r.url}`));
      assert.deepEqual([...declared].sort(), [...PUBLIC_ROUTES[server.role]].sort(), server.role);
      const health = await rawRequest(server.endpoint, plainRequest("GET", "/healthz"));
      assert.equal(health.status, 200, `${server.role} /healthz: ${describeAnswer(health)}`);
    }
    const page = await rawRequest(servers[1]!.endpoint, plainRequest("GET", "/hosts/h1", { accept: "text/html" }));
    assert.equal(page.status, 200, "the dashboard's client-side page");
    assert.match(page.headers["content-type"] ?? "", /text\/html/);
  });

  test("every protected route answers 401 without the token and with a wrong one", async () => {
    for (const server of servers) {
      for (const route of server.routes.filter((r) => r.access !== "public")) {
        const path = concrete(route.url);
        for (const [what, headers] of [
          ["no token", {}],
          ["a wrong token", { authorization: `Bearer ${WRONG}` }],
          ["an empty token", { authorization: "Bearer " }],
          ["another scheme", { authorization: `Basic ${server.token}` }],
        ] as const) {
          const answer = await rawRequest(server.endpoint, request(route.method, path, headers));
          const label = `${server.role} ${route.method} ${path} with ${what}`;
          if (route.method === "HEAD") assert.equal(answer.status, 401, `${label}: ${describeAnswer(answer)}`);
          else assertRefused(answer, label);
          assert.equal(answer.status, 401, label);
        }
        if (route.access === "token-or-query") {
          const answer = await rawRequest(server.endpoint, request(route.method, `${path}?token=${WRONG}`));
          assert.equal(answer.status, 401, `${server.role} ${route.method} ${path}?token=WRONG`);
        }
      }
    }
  });

  test("no bypass form reaches a protected route, as a request or as a WebSocket upgrade", async () => {
    const failures: string[] = [];
    for (const server of servers) {
      for (const route of server.routes.filter((r) => r.access !== "public" && r.method !== "HEAD")) {
        const forms = bypassForms(concrete(route.url), { queryToken: route.access === "token" ? server.token : undefined });
        for (const form of forms) {
          const label = `${server.role} ${route.method} ${route.url} (${form.name}: ${form.target})`;
          const plain = await rawRequest(server.endpoint, request(route.method, form.target));
          try {
            assertRefused(plain, label);
          } catch (err) {
            failures.push((err as Error).message);
          }
          if (route.method !== "GET") continue;
          const upgrade = await rawRequest(server.endpoint, upgradeRequest(form.target), 5000);
          try {
            assertRefused(upgrade, `${label} as a WebSocket upgrade`);
          } catch (err) {
            failures.push((err as Error).message);
          }
        }
      }
    }
    assert.deepEqual(failures, [], `${failures.length} requests got through:\n${failures.slice(0, 40).join("\n")}`);
  });

  test("the daemon's unix socket decides the same", async () => {
    const socket = { socketPath: running.socketPath };
    for (const route of daemon.app.routeTable.filter((r) => r.access !== "public" && r.method !== "HEAD")) {
      for (const target of [concrete(route.url), `http://x${concrete(route.url)}`, `/${concrete(route.url)}`]) {
        assertRefused(await rawRequest(socket, request(route.method, target)), `unix socket ${route.method} ${target}`);
      }
    }
    assert.equal((await rawRequest(socket, plainRequest("GET", "/healthz"))).status, 200);
  });

  test("a path no route matched: 401 without a valid token, 404 with one", async () => {
    for (const server of servers) {
      for (const target of ["/no/such/path", "/API/STATUS", "/vm", "/nodes/x/y/z"]) {
        assertRefused(await rawRequest(server.endpoint, plainRequest("GET", target)), `${server.role} GET ${target}`);
        assertRefused(await rawRequest(server.endpoint, plainRequest("DELETE", target, { authorization: `Bearer ${WRONG}` })), `${server.role} DELETE ${target}`);
        const known = await rawRequest(server.endpoint, plainRequest("DELETE", target, { authorization: `Bearer ${server.token}` }));
        assert.equal(known.status, 404, `${server.role} DELETE ${target} with the token: ${describeAnswer(known)}`);
        assert.equal((JSON.parse(known.body) as { code: string }).code, "not_found");
      }
    }
  });

  test("a path the router cannot decode, or a name too long for it: 401 without the token, a 4xx with it", async () => {
    for (const server of servers) {
      const prefix = server.role === "daemon" ? "/vm" : "/api/hosts";
      for (const target of [`${prefix}/%zz`, `${prefix}/%C0%AE`, `${prefix}/${"x".repeat(1100)}`]) {
        const anonymous = await rawRequest(server.endpoint, plainRequest("GET", target));
        assert.equal(anonymous.status, 401, `${server.role} GET ${target.slice(0, 40)}: ${describeAnswer(anonymous)}`);
        const known = await rawRequest(server.endpoint, plainRequest("GET", target, { authorization: `Bearer ${server.token}` }));
        // 400, or 404 where the router fell back to a wildcard route (the controller's dashboard).
        assert.ok(known.status === 400 || known.status === 404, `${server.role} GET ${target.slice(0, 40)} with the token: ${describeAnswer(known)}`);
        assert.match((JSON.parse(known.body) as { code: string }).code, /^(invalid_request|not_found)$/);
      }
    }
  });

  test("the key in the query opens the routes that take it, and only as the whole key", async () => {
    const controllerEndpoint = servers[1]!.endpoint;
    const accepted = await rawRequest(controllerEndpoint, upgradeRequest(`/ws?token=${API_KEY}`), 5000);
    assert.equal(accepted.status, 101, describeAnswer(accepted));
    for (const target of [`/ws?token=${API_KEY}x`, `/ws?token=${API_KEY}&token=${API_KEY}`, `/ws?TOKEN=${API_KEY}`, `/ws?token=`]) {
      assertRefused(await rawRequest(controllerEndpoint, upgradeRequest(target), 5000), target);
    }
    const status = await rawRequest(controllerEndpoint, plainRequest("GET", `/api/status?token=${API_KEY}`));
    assert.equal(status.status, 401, "GET /api/status does not take the key in the query");
  });
});
