// Relays one shell session between the client's WebSocket and the agent's HTTP/2 stream.
//
// Where the framing is parsed: the daemon decodes the client's messages as a stream of frames (so a frame
// split over messages, or several in one, still works), drops heartbeats, and writes the rest to the agent
// as one byte stream; the agent parses them again and drives the pty. The agent's answer is a byte stream of
// frames too; the daemon splits it back into one WebSocket message per frame, as Slicer's clients expect,
// and turns the agent's final session-close frame (which carries the exit status) into an empty 0x05 frame
// followed by a normal close whose reason is the exit status.
//
// Backpressure: a full agent stream pauses the WebSocket; a WebSocket with too much unsent data pauses the
// agent stream (HTTP/2 flow control then stops the guest, which stops reading the pty).
import type { WebSocket } from "ws";
import { CLOSE_CODE, closeReason, describeShellExit, encodeFrame, FRAME_TYPE, FrameDecoder, FrameTooLargeError, type ShellExitStatus } from "../../protocol/shell.ts";
import { sendWithBackpressure } from "../../http/ws-backpressure.ts";
import type { AgentDuplex } from "./agent-sessions.ts";

function parseStatus(payload: Uint8Array): ShellExitStatus | undefined {
  try {
    const status = JSON.parse(new TextDecoder().decode(payload)) as ShellExitStatus;
    return Number.isInteger(status?.exit_code) ? status : undefined;
  } catch {
    return undefined;
  }
}

export function relayShell(ws: WebSocket, { toAgent, fromAgent, cancel }: AgentDuplex): void {
  let ended = false;
  const end = (code: number, reason: string): void => {
    if (ended) return;
    ended = true;
    if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, closeReason(reason));
    if (!fromAgent.closed) cancel();
    toAgent.destroy();
  };

  // Client -> agent.
  const clientFrames = new FrameDecoder();
  let clientPaused = false;
  ws.on("message", (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
    if (!isBinary || ended) return; // text messages carry nothing in this protocol
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer);
    let frames: ReturnType<typeof clientFrames.push>;
    try {
      frames = clientFrames.push(bytes);
    } catch (err) {
      if (err instanceof FrameTooLargeError) return end(CLOSE_CODE.messageTooBig, err.message);
      throw err;
    }
    for (const frame of frames) {
      if (frame.type === FRAME_TYPE.heartbeat) continue;
      if (frame.type !== FRAME_TYPE.data && frame.type !== FRAME_TYPE.windowSize && frame.type !== FRAME_TYPE.shutdown) continue;
      if (!toAgent.write(encodeFrame(frame.type, frame.payload)) && !clientPaused) {
        clientPaused = true;
        ws.pause();
        toAgent.once("drain", () => {
          clientPaused = false;
          ws.resume();
        });
      }
    }
  });
  // The client left: the agent kills the shell's session when its stream is cancelled.
  ws.on("close", () => end(CLOSE_CODE.normal, "Client closed the session"));
  ws.on("error", () => end(CLOSE_CODE.internalError, "WebSocket error"));

  // Agent -> client.
  const agentFrames = new FrameDecoder();
  const send = sendWithBackpressure(ws, fromAgent);
  let status: ShellExitStatus | undefined;
  fromAgent.on("data", (chunk: Buffer) => {
    let frames: ReturnType<typeof agentFrames.push>;
    try {
      frames = agentFrames.push(chunk);
    } catch {
      return end(CLOSE_CODE.internalError, "The guest agent sent a malformed shell frame");
    }
    for (const frame of frames) {
      if (frame.type === FRAME_TYPE.data) send(encodeFrame(FRAME_TYPE.data, frame.payload));
      else if (frame.type === FRAME_TYPE.sessionClose) status = parseStatus(frame.payload) ?? { exit_code: 255 };
    }
  });
  fromAgent.on("end", () => {
    if (!status) return end(CLOSE_CODE.internalError, "The guest agent ended the session without an exit status");
    send(encodeFrame(FRAME_TYPE.sessionClose));
    end(CLOSE_CODE.normal, describeShellExit(status));
  });
  fromAgent.on("error", (err) => end(CLOSE_CODE.internalError, `Lost the connection to the guest agent: ${err.message}`));
  fromAgent.on("close", () => end(CLOSE_CODE.internalError, "Lost the connection to the guest agent"));
}
