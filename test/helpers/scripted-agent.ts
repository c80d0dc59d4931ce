// A stand-in for the guest agent's HTTP/2 side in unit tests: a server on a unix socket whose streams are
// scripted per request, and one client session as the daemon holds it.
import { mkdtemp, rm } from "node:fs/promises";
import { constants as h2, connect as h2connect, createServer, type ClientHttp2Session, type ClientHttp2Stream, type ServerHttp2Stream } from "node:http2";
import { connect as netConnect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { openCancellableRequest } from "../../src/daemon/agent/cancel-request.ts";

export type StreamScript = (stream: ServerHttp2Stream) => void;

export interface ScriptedAgent {
  /** Starts a request served by `script`; resolves once the response headers arrived, as AgentClient.exec does. */
  request(script: StreamScript): Promise<{ stream: ClientHttp2Stream; served: Promise<ServerHttp2Stream>; cancel: () => void }>;
  /** Drops every connection to the server, as a dying VM or agent does. */
  dropConnections(): void;
  close(): Promise<void>;
}

export async function startScriptedAgent(): Promise<ScriptedAgent> {
  const dir = await mkdtemp(join(tmpdir(), "corral-agent-fake-"));
  const socketPath = join(dir, "agent.sock");
  const scripts = new Map<string, StreamScript>();
  const rawSockets = new Set<Socket>();
  const server = createServer();
  server.on("connection", (socket: Socket) => rawSockets.add(socket));
  server.on("sessionError", () => undefined);
  server.on("stream", (stream, headers) => {
    stream.on("error", () => undefined);
    stream.respond({ [h2.HTTP2_HEADER_STATUS]: 200, [h2.HTTP2_HEADER_CONTENT_TYPE]: "application/x-ndjson" });
    scripts.get(String(headers[h2.HTTP2_HEADER_PATH]))?.(stream);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));

  const connectSession = (): ClientHttp2Session => {
    const session = h2connect("http://corral-agent", { createConnection: () => netConnect(socketPath) });
    session.on("error", () => undefined);
    return session;
  };
  let session = connectSession();
  let nextPath = 0;

  return {
    async request(script) {
      if (session.closed || session.destroyed) session = connectSession();
      const path = `/exec/${++nextPath}`;
      let resolveServed!: (s: ServerHttp2Stream) => void;
      const served = new Promise<ServerHttp2Stream>((resolve) => {
        resolveServed = resolve;
      });
      scripts.set(path, (s) => {
        resolveServed(s);
        script(s);
      });
      const { stream, cancel } = openCancellableRequest(session, { [h2.HTTP2_HEADER_METHOD]: "POST", [h2.HTTP2_HEADER_PATH]: path }, { endStream: false });
      // AgentClient leaves an "error" listener on the stream (from waiting for the response); do the same.
      stream.once("error", () => undefined);
      await new Promise<void>((resolve, reject) => {
        stream.once("response", () => resolve());
        stream.once("close", () => reject(new Error("closed before the response")));
      });
      return { stream, served, cancel };
    },
    dropConnections() {
      for (const raw of rawSockets) raw.destroy();
      rawSockets.clear();
    },
    async close() {
      session.destroy();
      for (const s of rawSockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A script that writes each piece as its own DATA frame (a short pause between them), then ends or runs `last`. */
export function writePieces(pieces: Array<string | Buffer>, last: StreamScript = (s) => s.end()): StreamScript {
  return (stream) => {
    void (async () => {
      for (const piece of pieces) {
        stream.write(piece);
        await sleep(4);
      }
      last(stream);
    })();
  };
}
