// Errors of a scope that speaks a Go server's wire (Virtumancer's /api/v1), on the shared app base: the
// message and a newline as text/plain with nosniff, the catalogue's status and its code in a header, for a
// service's error, a validation error, a bad body and an unexpected failure alike; 401 and routes outside the
// scope keep the catalogue's JSON.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Type } from "@sinclair/typebox";
import { pino } from "pino";
import { createAppBase, type CorralApp } from "../../src/http/app-base.ts";
import { ERROR_CODE_HEADER, goErrorText, installTextErrors } from "../../src/http/text-errors.ts";
import { CorralError } from "../../src/protocol/errors.ts";
import type { Logger } from "../../src/util/log.ts";
import { assertGoTextError } from "../fixtures/virtumancer/wire.ts";

const KEY = "text-errors-test-key-0123456789";
const auth = { authorization: `Bearer ${KEY}` };

describe("Go's text errors for a scope of routes", { timeout: 20_000 }, () => {
  let app: CorralApp;

  before(async () => {
    app = await createAppBase({
      role: "daemon",
      log: pino({ level: "silent" }) as unknown as Logger,
      token: KEY,
      credential: "token",
      openapi: { title: "t", description: "t", version: "0" },
    });
    app.get("/healthz", { config: { access: "public" } }, async () => ({ status: "ok" }));
    await app.register(
      async (scope) => {
        installTextErrors(scope);
        const typed = scope as unknown as CorralApp;
        typed.get("/hosts/:id", { schema: { params: Type.Object({ id: Type.String({ pattern: "^[a-z]+$" }) }) } }, async (request) => {
          throw new CorralError("host_not_found", `Host "${request.params.id}" is not registered:\ngive another`);
        });
        typed.post("/hosts", { schema: { body: Type.Object({ uri: Type.String() }) } }, async () => ({ ok: true }));
        typed.get("/boom", async () => {
          throw new Error("a bug with a secret in it");
        });
        typed.get("/fine", async () => ({ ok: true }));
      },
      { prefix: "/api/v1" },
    );
    app.get("/api/hosts/:id", async () => {
      throw new CorralError("host_not_found", "Host not found");
    });
    await app.ready();
  });
  after(() => app.close());

  const call = async (method: "GET" | "POST", url: string, options: { body?: string; headers?: Record<string, string> } = {}) => {
    const res = await app.inject({ method, url, headers: { ...auth, ...options.headers }, ...(options.body === undefined ? {} : { payload: options.body }) });
    return { status: res.statusCode, headers: new Headers(res.headers as Record<string, string>), text: res.body };
  };

  test("a service's error: its status, its message on one line, its code in a header", async () => {
    const answer = await call("GET", "/api/v1/hosts/nope");
    assertGoTextError(answer, "unknown host");
    assert.equal(answer.status, 404);
    assert.equal(answer.text, 'Host "nope" is not registered: give another\n');
    assert.equal(answer.headers.get(ERROR_CODE_HEADER), "host_not_found");
    assert.equal(answer.headers.get("content-length"), String(Buffer.byteLength(answer.text)));
  });

  test("validation and body errors read the same", async () => {
    for (const [what, method, url, body, status, code] of [
      ["a bad path parameter", "GET", "/api/v1/hosts/UPPER", undefined, 400, "invalid_name"],
      ["a missing field", "POST", "/api/v1/hosts", "{}", 400, "invalid_request"],
      ["a body that is not JSON", "POST", "/api/v1/hosts", "{", 400, "invalid_json"],
    ] as const) {
      const answer = await call(method, url, body === undefined ? {} : { body, headers: { "content-type": "application/json" } });
      assertGoTextError(answer, what);
      assert.deepEqual([answer.status, answer.headers.get(ERROR_CODE_HEADER)], [status, code], `${what}: ${answer.text}`);
    }
  });

  test("an unexpected failure is a 500 that names no detail", async () => {
    const answer = await call("GET", "/api/v1/boom");
    assertGoTextError(answer, "a bug");
    assert.equal(answer.status, 500);
    assert.doesNotMatch(answer.text, /secret/);
  });

  test("answers that are not errors, 401, and routes outside the scope are untouched", async () => {
    const fine = await call("GET", "/api/v1/fine");
    assert.deepEqual([fine.status, JSON.parse(fine.text)], [200, { ok: true }]);
    const refused = await app.inject({ method: "GET", url: "/api/v1/hosts/nope" });
    assert.equal(refused.statusCode, 401);
    assert.equal(refused.json().code, "unauthorized");
    const outside = await call("GET", "/api/hosts/x");
    assert.deepEqual([outside.status, JSON.parse(outside.text)], [404, { error: "Host not found", code: "host_not_found" }]);
  });

  test("goErrorText: one line and a newline", () => {
    assert.equal(goErrorText("a\r\n  b\nc"), "a b c\n");
  });
});
