// How the agent's forward relay passes a cut on: a host that cancels resets the target's socket, and a target
// that resets has the host's stream reset, in neither case as an end of input that looks like a clean one.
import assert from "node:assert/strict";
import { connect as h2connect, constants as h2, createServer as createH2Server, type ClientHttp2Session, type ServerHttp2Stream } from "node:http2";
import { createServer as createNetServer, connect as netConnect, type AddressInfo, type Server, type Socket } from "node:net";
import { test, type TestContext } from "node:test";
import { openCancellableRequest } from "../../src/daemon/agent/cancel-request.ts";
import { relayConnection } from "../../src/guest/forward.ts";

/** What one side of the connection saw, in order: "end" for a clean end of input, "error <code>" for a reset. */
function watchEnding(stream: NodeJS.ReadableStream & NodeJS.EventEmitter, seen: string[]): void {
  stream.on("end", () => seen.push("end"));
  stream.on("error", (err: NodeJS.ErrnoException) => seen.push(`error ${err.code}`));
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)));
}

/** A target in the "guest" and an agent relaying to it; `onTarget` gets each of the target's connections. */
async function forwarding(t: TestContext, onTarget: (socket: Socket) => void): Promise<ClientHttp2Session> {
  const target = createNetServer(onTarget);
  const targetPort = await listen(target);
  const agent = createH2Server();
  agent.on("stream", (stream: ServerHttp2Stream) => {
    stream.on("error", () => undefined);
    const socket = netConnect({ host: "127.0.0.1", port: targetPort }, () => {
      stream.respond({ [h2.HTTP2_HEADER_STATUS]: 200 });
      void relayConnection(stream, socket);
    });
  });
  const agentPort = await listen(agent);
  const session = h2connect(`http://127.0.0.1:${agentPort}`);
  session.on("error", () => undefined);
  t.after(() => {
    session.destroy();
    agent.close();
    target.close();
  });
  return session;
}

test("a host that cancels the forward resets the target's socket: the target never reads an end of input", async (t) => {
  const seen: string[] = [];
  let gotAll!: () => void;
  const receivedAll = new Promise<void>((resolve) => {
    gotAll = resolve;
  });
  let targetClosed!: Promise<void>;
  const session = await forwarding(t, (socket) => {
    let received = 0;
    watchEnding(socket, seen);
    socket.on("data", (chunk: Buffer) => {
      received += chunk.length;
      if (received === 1000) gotAll();
    });
    targetClosed = new Promise((resolve) => socket.once("close", () => resolve()));
  });
  const { stream, cancel } = openCancellableRequest(session, { [h2.HTTP2_HEADER_METHOD]: "POST", [h2.HTTP2_HEADER_PATH]: "/v1/forward" }, { endStream: false });
  stream.write(Buffer.alloc(1000, 0x61));
  await receivedAll;
  cancel();
  await targetClosed;
  assert.deepEqual(seen, ["error ECONNRESET"]);
});

test("a target that resets the connection resets the host's stream: the host never reads a complete answer", async (t) => {
  const session = await forwarding(t, (socket) => {
    socket.once("data", () => socket.resetAndDestroy());
  });
  const stream = session.request({ [h2.HTTP2_HEADER_METHOD]: "POST", [h2.HTTP2_HEADER_PATH]: "/v1/forward" }, { endStream: false });
  const seen: string[] = [];
  watchEnding(stream, seen);
  stream.resume();
  stream.write("question");
  await new Promise<void>((resolve) => stream.once("close", () => resolve()));
  assert.deepEqual(seen, ["error ERR_HTTP2_STREAM_ERROR"]);
  assert.equal(stream.rstCode, h2.NGHTTP2_INTERNAL_ERROR);
});
