import { test, describe } from "node:test";
import assert from "node:assert/strict";
import Fastify, { type FastifyInstance } from "fastify";
import { installAccessControl, PUBLIC_ROUTES, routeKey } from "../../src/http/access.ts";
import { installErrorHandling } from "../../src/http/error-handler.ts";

const TOKEN = "0123456789abcdef0123456789abcdef";
const bearer = { authorization: `Bearer ${TOKEN}` };

/** A daemon-shaped app: /healthz public, /nodes by default, /ws taking the token in the query too. */
async function app(options: { token?: string; ready?: () => boolean } = {}): Promise<FastifyInstance> {
  const fastify = Fastify();
  installAccessControl(fastify, { role: "daemon", token: "token" in options ? options.token : TOKEN, credential: "token", isReady: options.ready });
  installErrorHandling(fastify);
  fastify.get("/healthz", { config: { access: "public" } }, async () => ({ status: "ok" }));
  fastify.get("/nodes", async () => ["n1"]);
  fastify.post("/nodes/:name", async () => ({ made: true }));
  fastify.get("/ws", { config: { access: "token-or-query" } }, async () => ({ ws: true }));
  await fastify.ready();
  return fastify;
}

describe("access control", { timeout: 20_000 }, () => {
  test("a route that declares nothing needs the token: 401 with the catalogue's body otherwise", async () => {
    const fastify = await app();
    try {
      const ok = await fastify.inject({ url: "/nodes", headers: bearer });
      assert.equal(ok.statusCode, 200);
      assert.deepEqual(ok.json(), ["n1"]);
      for (const authorization of [undefined, "Bearer ", `Bearer ${TOKEN}x`, `Basic ${TOKEN}`, TOKEN]) {
        const res = await fastify.inject({ method: "POST", url: "/nodes/x", headers: authorization === undefined ? {} : { authorization } });
        assert.equal(res.statusCode, 401, String(authorization));
        assert.deepEqual(res.json(), { error: "Missing or wrong token: send Authorization: Bearer TOKEN", code: "unauthorized" });
        assert.equal(res.headers["www-authenticate"], 'Bearer realm="corral"');
      }
    } finally {
      await fastify.close();
    }
  });

  test("the decision is the matched route's, whatever the URL looks like", async () => {
    const fastify = await app();
    try {
      for (const url of ["/%6eodes", "/nodes/", "/nodes?x=/healthz", `/%6Eodes?token=${TOKEN}`]) {
        assert.equal((await fastify.inject({ url })).statusCode, 401, url);
      }
      for (const url of ["/healthz", "/healthz?x=1", "/%68ealthz"]) {
        assert.equal((await fastify.inject({ url })).statusCode, 200, url);
      }
    } finally {
      await fastify.close();
    }
  });

  test("?token= counts only on routes that take it, and only once", async () => {
    const fastify = await app();
    try {
      assert.equal((await fastify.inject({ url: `/ws?token=${TOKEN}` })).statusCode, 200);
      assert.equal((await fastify.inject({ url: `/ws?token=${TOKEN}x` })).statusCode, 401);
      assert.equal((await fastify.inject({ url: `/ws?token=${TOKEN}&token=${TOKEN}` })).statusCode, 401);
      assert.equal((await fastify.inject({ url: "/ws", headers: bearer })).statusCode, 200);
      assert.equal((await fastify.inject({ url: `/nodes?token=${TOKEN}` })).statusCode, 401);
    } finally {
      await fastify.close();
    }
  });

  test("a path no route matched is 401 without the token (nothing is revealed) and 404 with it", async () => {
    const fastify = await app();
    try {
      const anonymous = await fastify.inject({ url: "/nothing/here?secret=1" });
      assert.equal(anonymous.statusCode, 401);
      assert.equal((await fastify.inject({ method: "DELETE", url: "/healthz" })).statusCode, 401, "a known path with another method");
      const known = await fastify.inject({ url: "/nothing/here?secret=1", headers: bearer });
      assert.equal(known.statusCode, 404);
      assert.deepEqual(known.json(), { error: "No route for GET /nothing/here", code: "not_found" });
    } finally {
      await fastify.close();
    }
  });

  test("without a token configured every route is open, and a missing one is a plain 404", async () => {
    const fastify = await app({ token: undefined });
    try {
      assert.equal((await fastify.inject({ url: "/nodes" })).statusCode, 200);
      assert.equal((await fastify.inject({ url: "/nodes", headers: { authorization: "Bearer " } })).statusCode, 200, "Slicer's SDK sends an empty token");
      assert.equal((await fastify.inject({ url: "/nothing" })).statusCode, 404);
    } finally {
      await fastify.close();
    }
  });

  test("while not ready: 503 for callers with the token, public routes still answer, others still 401", async () => {
    let ready = false;
    const fastify = await app({ ready: () => ready });
    try {
      const starting = await fastify.inject({ url: "/nodes", headers: bearer });
      assert.equal(starting.statusCode, 503);
      assert.equal(starting.headers["retry-after"], "1");
      assert.deepEqual(starting.json(), { error: "The daemon is starting: try again in a moment", code: "unavailable" });
      assert.equal((await fastify.inject({ url: "/nodes" })).statusCode, 401);
      assert.equal((await fastify.inject({ url: "/healthz" })).statusCode, 200);
      ready = true;
      assert.equal((await fastify.inject({ url: "/nodes", headers: bearer })).statusCode, 200);
    } finally {
      await fastify.close();
    }
  });

  test("a route may be public only if PUBLIC_ROUTES names it, and every name there must be a public route", async () => {
    const stray = Fastify();
    installAccessControl(stray, { role: "daemon", token: TOKEN, credential: "token" });
    assert.throws(() => stray.get("/info", { config: { access: "public" } }, async () => ({})), /"GET \/info" declares access "public" but is not in PUBLIC_ROUTES\.daemon/);
    await stray.close();

    const missing = Fastify();
    installAccessControl(missing, { role: "daemon", token: TOKEN, credential: "token" });
    missing.get("/healthz", async () => ({}));
    await assert.rejects(async () => missing.ready(), /PUBLIC_ROUTES\.daemon names "GET \/healthz", which no route declares public/);
    await missing.close().catch(() => undefined);
  });

  test("the lists are written as METHOD /path, a HEAD route named by its GET", () => {
    assert.equal(routeKey("HEAD", "/healthz"), "GET /healthz");
    for (const list of Object.values(PUBLIC_ROUTES)) for (const key of list) assert.match(key, /^(GET|POST|PUT|PATCH|DELETE) \/\S*$/);
  });
});
