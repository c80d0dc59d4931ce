// Answers in the route's wire (src/http/wire.ts): a route set declared TTstack's answers every error in
// TTstack's envelope {ok: false, error} (with Corral's code beside), from the shared plumbing too: 401, 503,
// validation 400, a thrown error, 413, an unexpected 500, a 408 body deadline; a path no route matched is
// answered in the wire its prefix gives. Routes that declare nothing keep Corral's {error, code}.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { describe, test } from "node:test";
import { Type } from "@sinclair/typebox";
import type { InjectOptions } from "fastify";
import { createAppBase, type CorralApp } from "../../src/http/app-base.ts";
import { speaksTTstack } from "../../src/http/wire.ts";
import { CorralError } from "../../src/protocol/errors.ts";
import { createLogger } from "../../src/util/log.ts";
import { envelopeError } from "../fixtures/ttstack/contract.ts";

const TOKEN = "0123456789abcdef0123456789abcdef";
const bearer = { authorization: `Bearer ${TOKEN}` };

async function app(options: { ready?: () => boolean; bodyMs?: number } = {}): Promise<CorralApp> {
  const fastify = await createAppBase({
    role: "daemon",
    log: createLogger({ level: "silent" }),
    token: TOKEN,
    credential: "token",
    isReady: options.ready,
    openapi: { title: "t", description: "t", version: "0" },
    unmatchedWire: (path) => (path === "/api" || path.startsWith("/api/") ? "ttstack" : "corral"),
    ...(options.bodyMs ? { deadlines: { bodyMs: options.bodyMs } } : {}),
  });
  await speaksTTstack(fastify, (scope) => {
    scope.get("/api/info", async () => ({ ok: true, data: { host_id: "h" } }));
    scope.post("/api/vms", { schema: { body: Type.Object({ vm_id: Type.String() }, { additionalProperties: false }) } }, async () => ({ ok: true }));
    scope.get("/api/vms/:id", async (request) => {
      throw new CorralError("vm_not_found", `VM ${JSON.stringify((request.params as { id: string }).id)} not found`);
    });
    scope.get("/api/boom", async () => {
      throw new Error("a bug");
    });
  });
  fastify.get("/healthz", { config: { access: "public" } }, async () => ({ status: "ok" }));
  fastify.get("/nodes", async () => {
    throw new CorralError("vm_not_found", "no such node");
  });
  await fastify.ready();
  return fastify;
}

const isEnvelopeError = (body: unknown, code: string): void => {
  assert.equal(envelopeError("()", body), undefined, JSON.stringify(body));
  const b = body as { ok: boolean; error: string; code: string };
  assert.equal(b.ok, false);
  assert.equal(b.code, code);
  assert.ok(b.error.length > 0);
};

describe("answers in the route's wire", { timeout: 30_000 }, () => {
  test("a TTstack route's answers and errors are its envelope; other routes keep {error, code}", async () => {
    const fastify = await app();
    try {
      assert.deepEqual((await fastify.inject({ url: "/api/info", headers: bearer })).json(), { ok: true, data: { host_id: "h" } });
      const cases: [InjectOptions, number, string][] = [
        [{ url: "/api/info" }, 401, "unauthorized"],
        [{ url: "/api/vms/x", headers: bearer }, 404, "vm_not_found"],
        [{ method: "POST", url: "/api/vms", headers: bearer, payload: { colour: 1 } }, 400, "invalid_request"],
        [{ method: "POST", url: "/api/vms", headers: { ...bearer, "content-type": "application/json" }, payload: "{nope" }, 400, "invalid_json"],
        [
          { method: "POST", url: "/api/vms", headers: { ...bearer, "content-type": "application/json" }, payload: `{"vm_id":"${"x".repeat(2 * 1024 * 1024)}"}` },
          413,
          "payload_too_large",
        ],
        [{ url: "/api/boom", headers: bearer }, 500, "internal"],
        [{ url: "/api/nope", headers: bearer }, 404, "not_found"],
        [{ url: "/api/nope" }, 401, "unauthorized"],
        [{ url: "/api/%zz", headers: bearer }, 400, "invalid_request"],
      ];
      for (const [request, status, code] of cases) {
        const res = await fastify.inject(request);
        assert.equal(res.statusCode, status, `${JSON.stringify(request).slice(0, 120)}: ${res.body.slice(0, 200)}`);
        isEnvelopeError(res.json(), code);
      }
      for (const request of [{ url: "/nodes", headers: bearer }, { url: "/nodes" }, { url: "/nope", headers: bearer }] as InjectOptions[]) {
        const body = (await fastify.inject(request)).json() as Record<string, unknown>;
        assert.deepEqual(Object.keys(body).sort(), ["code", "error"], JSON.stringify(body));
      }
    } finally {
      await fastify.close();
    }
  });

  test("503 while the server cannot serve yet, in the envelope", async () => {
    const fastify = await app({ ready: () => false });
    try {
      const res = await fastify.inject({ url: "/api/info", headers: bearer });
      assert.equal(res.statusCode, 503);
      isEnvelopeError(res.json(), "unavailable");
    } finally {
      await fastify.close();
    }
  });

  test("a body that stops arriving: 408 in the envelope", async () => {
    const fastify = await app({ bodyMs: 300 });
    await fastify.listen({ port: 0, host: "127.0.0.1" });
    try {
      const { port } = fastify.server.address() as { port: number };
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = connect(port, "127.0.0.1", () => {
          socket.write(`POST /api/vms HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"vm_id":`);
        });
        let text = "";
        socket.on("data", (chunk) => (text += chunk.toString()));
        socket.on("close", () => resolve(text));
        socket.on("error", reject);
      });
      assert.match(answer, /^HTTP\/1\.1 408/);
      isEnvelopeError(JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)), "request_timeout");
    } finally {
      await fastify.close();
    }
  });
});
