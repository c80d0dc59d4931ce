// Sending a stream's chunks on a WebSocket without buffering without bound: when the WebSocket holds more
// than HIGH_WATER bytes not yet handed to the kernel, the source is paused until it is down to LOW_WATER.
import type { WebSocket } from "ws";

export const HIGH_WATER = 1024 * 1024;
export const LOW_WATER = 256 * 1024;

/** What can be paused: a Readable, or another WebSocket (a relay's other side). */
export interface Pausable {
  pause(): unknown;
  resume(): unknown;
}

/** Returns a send function for binary messages that pauses `source` while `ws` is backed up. */
export function sendWithBackpressure(ws: WebSocket, source: Pausable): (data: Uint8Array) => void {
  let paused = false;
  const afterSend = (err?: Error): void => {
    if (err || !paused || ws.bufferedAmount > LOW_WATER) return;
    paused = false;
    source.resume();
  };
  return (data) => {
    if (ws.readyState !== ws.OPEN) return;
    ws.send(data, { binary: true }, afterSend);
    if (!paused && ws.bufferedAmount > HIGH_WATER) {
      paused = true;
      source.pause();
    }
  };
}
