// Relays one WebSocket session between a browser and a daemon (the controller's shell route): binary
// messages pass unchanged both ways (the daemon parses Slicer's frames; the relay does not need to), text
// messages carry nothing in that protocol and are dropped. A side that holds too much unsent data pauses
// the other side's reading (see sendWithBackpressure). When either side closes, the other is closed with
// the same code and reason where the code may be sent, so the browser sees the shell's exit status.
import type { WebSocket } from "ws";
import { CLOSE_CODE, closeReason } from "../protocol/shell.ts";
import { sendWithBackpressure } from "../http/ws-backpressure.ts";

/** Close codes an endpoint may send (RFC 6455 7.4): 1005, 1006 and 1015 only describe what was received. */
function sendableCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/** The code and reason to pass on for a close received from the other side. */
function passOn(code: number, reason: string, lost: string): { code: number; reason: string } {
  if (code === 1005) return { code: CLOSE_CODE.normal, reason };
  if (!sendableCode(code)) return { code: CLOSE_CODE.badGateway, reason: lost };
  return { code, reason };
}

export function relayWebSockets(client: WebSocket, upstream: WebSocket, names: { upstream: string }): void {
  let ended = false;
  const closeBoth = (first: WebSocket, second: WebSocket, code: number, reason: string): void => {
    if (ended) return;
    ended = true;
    for (const ws of [first, second]) {
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, closeReason(reason));
    }
  };
  const pipe = (from: WebSocket, to: WebSocket, lost: string): void => {
    const send = sendWithBackpressure(to, from);
    from.on("message", (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      if (!isBinary || ended) return;
      send(Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer));
    });
    from.on("close", (code: number, reason: Buffer) => {
      const next = passOn(code, reason.toString(), lost);
      closeBoth(to, from, next.code, next.reason);
    });
    from.on("error", () => {
      closeBoth(to, from, CLOSE_CODE.badGateway, lost);
      from.terminate();
    });
  };
  pipe(client, upstream, "The client's connection was lost");
  pipe(upstream, client, `Lost the connection to ${names.upstream}`);
}
