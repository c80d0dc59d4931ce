// Relays one forwarded connection between the client's WebSocket and the agent's HTTP/2 stream: binary
// messages carry raw bytes both ways (their boundaries mean nothing), with backpressure both ways.
//
// Ending: the target closing its side ends the agent's stream, and the WebSocket is closed normally. The
// client closing the WebSocket with a close frame ends the request stream after whatever it sent (the agent
// half-closes the target's socket) and, once the agent is done or a short grace has passed, cancels the
// stream. A client that vanished (no close frame) or broke the protocol is a cut, not an end: the stream is
// cancelled at once, a reset alone, and the agent resets the target's socket.
import type { WebSocket } from "ws";
import { CLOSE_CODE, closeReason } from "../../protocol/shell.ts";
import { sendWithBackpressure } from "../../http/ws-backpressure.ts";
import type { AgentDuplex } from "./agent-sessions.ts";

/** After the client closed, how long the agent may take to finish the connection before it is cancelled. */
const CLOSE_GRACE_MS = 2000;

export function relayForward(ws: WebSocket, { toAgent, fromAgent, cancel }: AgentDuplex, target: string): void {
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
  const cut = (): void => {
    if (!fromAgent.closed) cancel();
    toAgent.destroy();
  };
  ws.on("close", (code: number) => {
    if (code === CLOSE_CODE.abnormal) return cut();
    if (!toAgent.writableEnded && !toAgent.destroyed) toAgent.end();
    if (fromAgent.closed) return;
    fromAgent.resume(); // nobody reads it any more: let it drain so the agent can finish
    const timer = setTimeout(() => {
      if (!fromAgent.closed) cancel();
    }, CLOSE_GRACE_MS);
    timer.unref();
    fromAgent.once("close", () => clearTimeout(timer));
  });
  ws.on("error", cut);

  // Agent -> client.
  const send = sendWithBackpressure(ws, fromAgent);
  fromAgent.on("data", (chunk: Buffer) => send(chunk));
  fromAgent.on("end", () => closeWs(CLOSE_CODE.normal, `${target} closed the connection`));
  fromAgent.on("error", (err) => closeWs(CLOSE_CODE.internalError, `The connection to ${target} failed: ${err.message}`));
  fromAgent.on("close", () => closeWs(CLOSE_CODE.internalError, `The connection to ${target} was lost`));
}
