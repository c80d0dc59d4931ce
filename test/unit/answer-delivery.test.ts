// watchDelivery on a real HTTP server and real sockets: an answer written whole counts as delivered (also on
// a kept-alive connection), a client that leaves unanswered aborts the signal, and so does an answer whose
// write cannot finish because the client stopped reading and went away.
import { describe, test, after, before } from "node:test";
import assert from "node:assert/strict";
import { Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { connect } from "node:net";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { watchDelivery, type AnswerDelivery } from "../../src/http/answer-delivery.ts";
import { CorralError } from "../../src/protocol/errors.ts";

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

describe("watchDelivery", () => {
  let server: Server;
  let port = 0;
  let handle: Handler = () => undefined;

  before(async () => {
    server = createServer((req, res) => handle(req, res));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    port = (server.address() as { port: number }).port;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((done) => server.close(done));
  });

  /** Routes the next requests to `handler` and resolves with each one's delivery watch, in order. */
  function serve(onRequest: (res: ServerResponse, delivery: AnswerDelivery) => void): AnswerDelivery[] {
    const seen: AnswerDelivery[] = [];
    handle = (_req, res) => {
      const delivery = watchDelivery(res);
      seen.push(delivery);
      onRequest(res, delivery);
    };
    return seen;
  }

  test("an answer written whole is delivered, twice on one kept-alive connection", async () => {
    const seen = serve((res) => res.end("ok"));
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < 2; i++) {
      const res = await new Promise<IncomingMessage>((done, fail) => request({ port, agent, path: "/" }, done).on("error", fail).end());
      res.resume();
      await once(res, "end");
    }
    agent.destroy();
    assert.equal(seen.length, 2);
    assert.deepEqual(await Promise.all(seen.map((d) => d.delivered)), [true, true]);
    assert.equal(
      seen.every((d) => !d.abandoned.aborted),
      true,
    );
  });

  test("an answer on a connection the server closes after it (Connection: close) is delivered", async () => {
    const seen = serve((res) => res.end("ok"));
    const res = await new Promise<IncomingMessage>((done, fail) =>
      request({ port, path: "/", headers: { connection: "close" } }, done)
        .on("error", fail)
        .end(),
    );
    res.resume();
    await once(res, "end");
    assert.equal(await seen[0]?.delivered, true);
  });

  test("a client that leaves before the answer aborts the signal with client_closed_request", async () => {
    const seen = serve(() => undefined); // never answers by itself
    const socket = connect(port, "127.0.0.1");
    socket.write("POST /nodes HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    while (seen.length === 0) await sleep(10);
    socket.destroy();
    const delivery = seen[0] as AnswerDelivery;
    assert.equal(await delivery.delivered, false);
    assert.equal(delivery.abandoned.aborted, true);
    assert.ok(delivery.abandoned.reason instanceof CorralError);
    assert.equal((delivery.abandoned.reason as CorralError).code, "client_closed_request");
    assert.equal((delivery.abandoned.reason as CorralError).status, 499);
  });

  test("an answer whose write cannot finish (the client stopped reading, then left) is not delivered", async () => {
    const big = Buffer.alloc(32 * 1024 * 1024, 120);
    let writing = false;
    const seen = serve((res) => {
      writing = true;
      res.end(big);
    });
    const socket = connect(port, "127.0.0.1");
    socket.pause(); // reads nothing: the answer stays stuck in the buffers
    socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    while (!writing) await sleep(10);
    await sleep(100);
    const delivery = seen[0] as AnswerDelivery;
    assert.equal(delivery.abandoned.aborted, false, "still writing");
    socket.resetAndDestroy();
    assert.equal(await delivery.delivered, false);
    assert.equal(delivery.abandoned.aborted, true);
  });

  test("a response whose client was already gone when watching began counts as abandoned at once", async () => {
    let late: AnswerDelivery | undefined;
    let closed = false;
    handle = (req, res) => {
      req.socket.once("close", () => {
        closed = true;
        late = watchDelivery(res);
      });
    };
    const socket = connect(port, "127.0.0.1");
    socket.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    await sleep(100);
    socket.destroy();
    while (!closed) await sleep(10);
    assert.ok(late);
    assert.equal(late.abandoned.aborted, true);
    assert.equal(await late.delivered, false);
  });
});
