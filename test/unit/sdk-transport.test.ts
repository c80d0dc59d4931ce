// The SDK's HTTP transport (node:http) against a real HTTP server on loopback and on a unix socket: errors
// as CorralApiError, silence deadlines, streamed bodies both ways, kept connections, and close().
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { CorralApiError, Transport } from "../../src/sdk/transport.ts";

type Handler = (request: IncomingMessage, response: ServerResponse) => void;

async function listen(server: Server, where: number | string): Promise<void> {
  await new Promise<void>((resolve) => server.listen(where, resolve));
}

async function bodyOf(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe("SDK transport (node:http)", () => {
  const routes = new Map<string, Handler>();
  const sockets = new Set<Socket>();
  let server: Server;
  let url: string;

  before(async () => {
    server = createServer((request, response) => {
      const route = routes.get(`${request.method} ${request.url?.split("?")[0]}`);
      if (route) return route(request, response);
      response.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: `no route ${request.url}`, code: "not_found" }));
    });
    server.on("connection", (socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    });
    await listen(server, 0);
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => {
    server.closeAllConnections();
    server.close();
  });

  test("a JSON call sends the token, the body and its length, and reads the answer", async () => {
    routes.set("POST /echo", async (request, response) => {
      const body = JSON.parse((await bodyOf(request)).toString());
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ body, auth: request.headers.authorization, length: request.headers["content-length"], agent: request.headers["user-agent"] }));
    });
    const transport = new Transport({ url, token: "t0ken" });
    const answer = await transport.json<{ body: unknown; auth: string; length: string; agent: string }>("POST", "/echo", { name: "é" });
    assert.deepEqual(answer, { body: { name: "é" }, auth: "Bearer t0ken", length: String(Buffer.byteLength('{"name":"é"}')), agent: "corral-sdk" });
    await transport.close();
  });

  test("a 4xx with Corral's {error, code} is a CorralApiError carrying both; a text answer keeps its text", async () => {
    routes.set("GET /teapot", (_request, response) => response.writeHead(418).end("short and stout"));
    const transport = new Transport({ url });
    await assert.rejects(transport.json("GET", "/missing"), (err: unknown) => {
      assert.ok(err instanceof CorralApiError);
      assert.deepEqual([err.status, err.code, err.message, err.method, err.path], [404, "not_found", "no route /missing", "GET", "/missing"]);
      return true;
    });
    await assert.rejects(transport.json("GET", "/teapot"), { status: 418, code: "unknown", message: "short and stout" });
    // request() hands back any status with its body unread.
    const raw = await transport.request("GET", "/teapot", {});
    assert.deepEqual([raw.statusCode, await raw.body.text()], [418, "short and stout"]);
    await transport.close();
  });

  test("a stream goes up chunked while the answer streams down, and neither is gathered first", async () => {
    routes.set("POST /upper", (request, response) => {
      response.writeHead(200, { "content-type": "application/octet-stream" });
      request.on("data", (chunk: Buffer) => response.write(chunk.toString().toUpperCase()));
      request.on("end", () => response.end());
    });
    const transport = new Transport({ url });
    let sent = 0;
    const upload = new Readable({
      read() {
        sent += 1;
        this.push(sent <= 200 ? "x".repeat(64 * 1024) : null);
      },
    });
    const response = await transport.send("POST", "/upper", { body: upload, timeoutMs: 0 });
    assert.equal(response.headers["transfer-encoding"], "chunked");
    let received = 0;
    for await (const chunk of response.body) {
      assert.match((chunk as Buffer).subarray(0, 4).toString(), /^X+$/);
      received += (chunk as Buffer).length;
    }
    assert.equal(received, 200 * 64 * 1024);
    await transport.close();
  });

  test("silence longer than the deadline fails the call with a code, before and during the answer", async () => {
    routes.set("GET /silent", () => undefined);
    routes.set("GET /stalls", (_request, response) => {
      response.writeHead(200);
      response.write("first");
    });
    const transport = new Transport({ url, timeoutMs: 200 });
    await assert.rejects(transport.json("GET", "/silent"), { code: "UND_ERR_HEADERS_TIMEOUT" });
    const stalled = await transport.send("GET", "/stalls", {});
    await assert.rejects(stalled.body.text(), { code: "UND_ERR_BODY_TIMEOUT" });
    await transport.close();
  });

  test("an abort signal ends the call", async () => {
    routes.set("GET /slow", () => undefined);
    const transport = new Transport({ url });
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 50);
    await assert.rejects(transport.send("GET", "/slow", { signal: abort.signal }), { name: "AbortError" });
    await transport.close();
  });

  test("calls reuse one kept connection; a GET on one the server dropped is sent again on a new one", async () => {
    const served = new WeakMap<Socket, number>();
    const seen = new Set<Socket>();
    routes.set("GET /who", (request, response) => {
      seen.add(request.socket);
      response.writeHead(200).end("{}");
    });
    // Drops a connection that already served a call, without a word, as a server past its keep-alive time does.
    const once: Handler = (request, response) => {
      const count = (served.get(request.socket) ?? 0) + 1;
      served.set(request.socket, count);
      if (count > 1) return void request.socket.destroy();
      response.writeHead(200).end(JSON.stringify({ count }));
    };
    routes.set("GET /once", once);
    routes.set("POST /once", once);
    const transport = new Transport({ url });
    for (let i = 0; i < 5; i++) await transport.json("GET", "/who");
    assert.equal(seen.size, 1, "five calls, one connection");
    assert.deepEqual(await transport.json("GET", "/once"), { count: 1 });
    assert.deepEqual(await transport.json("GET", "/once"), { count: 1 }, "the dropped call went again on a new connection");
    // A POST is not sent twice: the server may have acted on it.
    await assert.rejects(transport.json("POST", "/once"), { code: "ECONNRESET" });
    await transport.close();
  });

  test("close() lets a call under way finish, ends idle connections and refuses new calls", async () => {
    let finish: (() => void) | undefined;
    routes.set("GET /later", (_request, response) => {
      response.writeHead(200);
      response.write("part one, ");
      finish = () => response.end("part two");
    });
    const transport = new Transport({ url });
    const pending = await transport.send("GET", "/later", {});
    const text = pending.body.text();
    await transport.close();
    finish?.();
    assert.equal(await text, "part one, part two");
    await assert.rejects(transport.json("GET", "/ok"), /the client was closed/);
  });

  test("a refused connection fails with ECONNREFUSED (what the CLI reports as a daemon not running)", async () => {
    const closed = createServer();
    await listen(closed, 0);
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const transport = new Transport({ url: `http://127.0.0.1:${port}` });
    await assert.rejects(transport.json("GET", "/info"), { code: "ECONNREFUSED" });
    await transport.close();
  });

  test("a unix socket URL reaches a server listening there", async () => {
    const dir = await mkdtemp(join(tmpdir(), "corral-transport-"));
    const path = join(dir, "api.sock");
    const unixServer = createServer((request, response) => response.writeHead(200).end(JSON.stringify({ host: request.headers.host, path: request.url })));
    await listen(unixServer, path);
    try {
      for (const form of [`unix:${path}`, `unix://${path}`, path]) {
        const transport = new Transport({ url: form });
        assert.deepEqual(await transport.json("GET", "/vm/list?x=1"), { host: "localhost", path: "/vm/list?x=1" });
        await transport.close();
      }
    } finally {
      unixServer.closeAllConnections();
      await new Promise((resolve) => unixServer.close(resolve));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
