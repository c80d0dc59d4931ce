// Relays one forwarded connection between the client's WebSocket and the agent's HTTP/2 stream: binary
// messages carry raw bytes both ways (their boundaries mean nothing), with backpressure both ways.
//
// Ending: the target closing its side ends the agent's stream, and the WebSocket is closed normally. The
// client closing the WebSocket ends the request stream after whatever it sent (the agent half-closes the
// target's socket) and, once the agent is done or a short grace has passed, cancels the stream.
import { constants as h2, type ClientHttp2Stream } from "node:http2";
import type { Writable } from "node:stream";
import type { WebSocket } from "ws";
import { CLOSE_CODE, closeReason } from "../../protocol/shell.ts";
import { sendWithBackpressure } from "../../http/ws-backpressure.ts";

/** After the client closed, how long the agent may take to finish the connection before it is cancelled. */
const CLOSE_GRACE_MS = 2000;

export function relayForward(ws: WebSocket, toAgent: Writable, fromAgent: ClientHttp2Stream, target: string): void {
  const closeWs = (code: number, reason: string): void => {
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, closeReason(reason));
  };

  // Client -> agent.
  let clientPaused = false;
  ws.on("message", (data: Buffer | ArrayBuffer | Buffer[]) => {
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer);
    if (toAgent.writableEnded || toAgent.destroyed) return;
    if (!toAgent.write(bytes) && !clientPaused) {
      clientPaused = true;
      ws.pause();
      toAgent.once("drain", () => {
        clientPaused = false;
        ws.resume();
      });
    }
  });
  ws.on("close", () => {
    if (!toAgent.writableEnded && !toAgent.destroyed) toAgent.end();
    if (fromAgent.closed) return;
    fromAgent.resume(); // nobody reads it any more: let it drain so the agent can finish
    const timer = setTimeout(() => {
      if (!fromAgent.closed) fromAgent.close(h2.NGHTTP2_CANCEL);
    }, CLOSE_GRACE_MS);
    timer.unref();
    fromAgent.once("close", () => clearTimeout(timer));
  });
  ws.on("error", () => {
    if (!fromAgent.closed) fromAgent.close(h2.NGHTTP2_CANCEL);
  });

  // Agent -> client.
  const send = sendWithBackpressure(ws, fromAgent);
  fromAgent.on("data", (chunk: Buffer) => send(chunk));
  fromAgent.on("end", () => closeWs(CLOSE_CODE.normal, `${target} closed the connection`));
  fromAgent.on("error", (err) => closeWs(CLOSE_CODE.internalError, `The connection to ${target} failed: ${err.message}`));
  fromAgent.on("close", () => closeWs(CLOSE_CODE.internalError, `The connection to ${target} was lost`));
}
