// Streams the agent's NDJSON exec frames to the HTTP client byte for byte, with backpressure both ways.
// If the agent connection breaks before the exit frame, a final exit frame with an error is added, so
// clients always see how the command ended. Destroying the relay (client gone) cuts the request: a reset
// alone, so a command reading stdin is killed without first reading the end of its input.
import type { ClientHttp2Stream } from "node:http2";
import { Readable } from "node:stream";
import type { ExecFrame } from "../../protocol/agent.ts";

const EXIT_PREFIX = '{"type":"exit"';
/** Exit code reported when the guest could not tell how the command ended. */
export const EXIT_LOST = 255;

export function lostFrame(message: string): string {
  const now = new Date().toISOString();
  const frame: ExecFrame = { type: "exit", timestamp: now, stdout: "", stderr: "", exit_code: EXIT_LOST, ended_at: now, error: message };
  return `${JSON.stringify(frame)}\n`;
}

/** `cancel` cuts the agent's request (AgentResponse.cancel): what the relay does when its reader goes away. */
export function relayExecFrames(source: ClientHttp2Stream, cancel: () => void): Readable {
  let sawExit = false;
  let lineHead = "";
  let atLineStart = true;
  let finished = false;

  const out = new Readable({
    read() {
      source.resume();
    },
    destroy(err, callback) {
      if (!source.closed) cancel();
      callback(err);
    },
  });

  // Our frames always start with the type, so a line starting with EXIT_PREFIX is the exit frame; it counts
  // once its newline arrived (a connection lost inside it still gets a complete frame added).
  let inExitLine = false;
  const track = (chunk: Buffer): void => {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i] as number;
      if (byte === 0x0a) {
        if (inExitLine) sawExit = true;
        inExitLine = false;
        atLineStart = true;
        lineHead = "";
        continue;
      }
      if (atLineStart) {
        lineHead += String.fromCharCode(byte);
        if (lineHead.length >= EXIT_PREFIX.length) {
          inExitLine = lineHead === EXIT_PREFIX;
          atLineStart = false;
        }
      }
    }
  };
  const finish = (problem: string | undefined): void => {
    if (finished) return;
    finished = true;
    if (!sawExit) {
      // The stream may have broken mid-line: the added frame must start a line of its own.
      const separator = atLineStart && lineHead === "" ? "" : "\n";
      out.push(separator + lostFrame(problem ?? "The connection to the guest agent ended before the command did"));
    }
    out.push(null);
  };

  source.on("data", (chunk: Buffer) => {
    track(chunk);
    if (!out.push(chunk)) source.pause();
  });
  source.on("end", () => finish(undefined));
  source.on("error", (err) => finish(`The connection to the guest agent failed: ${err.message}`));
  source.on("close", () => finish(undefined));
  return out;
}
