// The agent's HTTP/2 server: every host connection gets its own session, all dispatched by one router.
import { createServer, type Http2Server } from "node:http2";
import type { Duplex } from "node:stream";
import { AGENT_MAX_FRAME_SIZE } from "../protocol/agent.ts";
import type { AgentRouter } from "./router.ts";

export class AgentServer {
  private readonly server: Http2Server;

  constructor(router: AgentRouter) {
    this.server = createServer({ settings: { initialWindowSize: 4 * 1024 * 1024, maxFrameSize: AGENT_MAX_FRAME_SIZE } });
    this.server.on("stream", (stream, headers) => void router.dispatch(stream, headers));
    this.server.on("session", (session) => {
      session.on("error", () => undefined); // the host went away mid-frame; the port starts a new session
      session.setLocalWindowSize(16 * 1024 * 1024);
    });
  }

  /** Serves one host connection until it closes. */
  serve(connection: Duplex): void {
    connection.on("error", () => undefined);
    this.server.emit("connection", connection);
  }
}
