// POST /v1/forward: one forwarded connection. The agent dials the target inside the guest and answers 200
// once connected (502 when it cannot connect, 504 when it took too long), then the request body flows to
// the socket and the socket's bytes come back as the response body, both piped with backpressure.
// The host ending its side half-closes the socket (its answer still comes back). The host cancelling the
// stream resets the socket (the target sees a reset, never an end of input); the socket failing resets the
// stream (the host sees an error, never a complete answer).
import { connect, type Socket } from "node:net";
import { constants as h2, type ServerHttp2Stream } from "node:http2";
import { FORWARD_AGENT_PATH, FORWARD_TARGET_HEADER, formatForwardTarget, parseForwardTarget, UPSTREAM_UNREACHABLE, type ForwardTarget } from "../protocol/forward.ts";
import { AgentRouteError, jsonHeader } from "./http.ts";
import type { AgentRouter } from "./router.ts";

const CONNECT_TIMEOUT_MS = 10_000;

const REASONS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOENT: "no such socket",
  EACCES: "permission denied",
  ENOTFOUND: "unknown host",
  EAI_AGAIN: "host name lookup failed",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ECONNRESET: "connection reset",
};

function readTarget(value: unknown): ForwardTarget {
  const target = value as Partial<ForwardTarget> | null;
  try {
    if (target?.kind === "unix" && typeof target.path === "string") return parseForwardTarget(`unix:${target.path}`);
    if (target?.kind === "tcp" && typeof target.host === "string" && typeof target.port === "number") {
      return parseForwardTarget(formatForwardTarget({ kind: "tcp", host: target.host, port: target.port }));
    }
  } catch (err) {
    throw new AgentRouteError(400, "invalid_request", `Invalid forward target: ${(err as Error).message}`);
  }
  throw new AgentRouteError(400, "invalid_request", `Header ${FORWARD_TARGET_HEADER} is not a forward target`);
}

/** Connects to `target`; rejects with an AgentRouteError that says why not. */
export function dialTarget(target: ForwardTarget, timeoutMs = CONNECT_TIMEOUT_MS): Promise<Socket> {
  const where = formatForwardTarget(target);
  return new Promise((resolve, reject) => {
    const socket = target.kind === "unix" ? connect({ path: target.path }) : connect({ host: target.host, port: target.port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new AgentRouteError(504, UPSTREAM_UNREACHABLE, `Cannot connect to ${where} in the guest: no answer within ${timeoutMs / 1000}s`));
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.removeAllListeners("error");
      resolve(socket);
    });
    socket.once("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const reason = REASONS[err.code ?? ""] ?? err.message;
      reject(new AgentRouteError(502, UPSTREAM_UNREACHABLE, `Cannot connect to ${where} in the guest: ${reason}`));
    });
  });
}

/** Pipes the stream and the socket into each other until either side is done. */
export function relayConnection(stream: ServerHttp2Stream, socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      resolve();
    };
    socket.setNoDelay(true);
    // Cancelled by the host. Node then also ends the stream's readable side, which the pipe below would pass
    // on as a FIN: the target would read a cut input as a complete one. Reset it first ("aborted" comes
    // before that "end").
    stream.once("aborted", () => socket.resetAndDestroy());
    // Host -> target. The host ending its side is a half-close: the target's answer may still follow.
    stream.pipe(socket);
    // Target -> host.
    socket.pipe(stream);
    socket.on("error", (err) => {
      // Reset by the target, or the like: reset the stream so the host closes its side with an error. Not
      // stream.close(code): that ends the answer first, and the host would take it as the target's FIN.
      if (!stream.destroyed) stream.destroy(err);
    });
    socket.on("close", () => {
      if (!stream.destroyed && !stream.writableEnded) stream.end();
      finish();
    });
    stream.on("close", () => {
      // Cancelled by the host (or finished): nothing more can travel either way.
      socket.destroy();
      finish();
    });
  });
}

export function registerForwardRoutes(router: AgentRouter): void {
  router.add("POST", FORWARD_AGENT_PATH, async ({ stream, headers }) => {
    const target = readTarget(jsonHeader<unknown>(headers[FORWARD_TARGET_HEADER], FORWARD_TARGET_HEADER));
    const socket = await dialTarget(target);
    if (stream.destroyed || stream.closed) {
      socket.destroy();
      return;
    }
    stream.respond({ [h2.HTTP2_HEADER_STATUS]: 200, [h2.HTTP2_HEADER_CONTENT_TYPE]: "application/octet-stream" });
    await relayConnection(stream, socket);
  });
}
