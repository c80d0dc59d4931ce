// Slicer's interactive shell protocol (GET /vm/HOST/shell) and how the daemon carries it to the guest agent.
// Shared by the daemon, the agent and the SDK; no node: imports here.
//
// Every WebSocket message is one frame: a type byte, the payload length (uint32, big-endian), the payload.
// Between daemon and agent the same frames travel back to back on one HTTP/2 stream (a byte stream), so
// both ends parse them with FrameDecoder, which also copes with frames split across chunks.

export const FRAME_TYPE = {
  /** Both ways: terminal bytes. */
  data: 0x01,
  /** Client to server: cols and rows, each a uint32 big-endian. */
  windowSize: 0x02,
  /** Both ways: end the session. */
  shutdown: 0x03,
  /** Client to server: keep-alive, ignored. */
  heartbeat: 0x04,
  /** Server to client: the shell exited (empty payload on the WebSocket). */
  sessionClose: 0x05,
} as const;

export type FrameType = (typeof FRAME_TYPE)[keyof typeof FRAME_TYPE];

export const FRAME_HEADER_BYTES = 5;
/** The largest payload either side accepts; a bigger declared length is a protocol error. */
export const MAX_FRAME_PAYLOAD = 1024 * 1024;

export interface ShellFrame {
  type: number;
  payload: Uint8Array;
}

export function encodeFrame(type: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.byteLength);
  const view = new DataView(frame.buffer);
  view.setUint8(0, type);
  view.setUint32(1, payload.byteLength, false);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

export function encodeWindowSize(cols: number, rows: number): Uint8Array {
  const payload = new Uint8Array(8);
  const view = new DataView(payload.buffer);
  view.setUint32(0, cols, false);
  view.setUint32(4, rows, false);
  return encodeFrame(FRAME_TYPE.windowSize, payload);
}

/** The largest size a terminal can have (the kernel's winsize fields are 16-bit). */
export const MAX_TERMINAL_SIZE = 0xffff;

/** Cols and rows of a window-size payload; undefined when it is not 8 bytes or a side is 0. */
export function decodeWindowSize(payload: Uint8Array): { cols: number; rows: number } | undefined {
  if (payload.byteLength !== 8) return undefined;
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const cols = view.getUint32(0, false);
  const rows = view.getUint32(4, false);
  if (cols === 0 || rows === 0) return undefined;
  return { cols: Math.min(cols, MAX_TERMINAL_SIZE), rows: Math.min(rows, MAX_TERMINAL_SIZE) };
}

export class FrameTooLargeError extends Error {
  constructor(readonly length: number) {
    super(`Shell frame of ${length} bytes is larger than the limit of ${MAX_FRAME_PAYLOAD} bytes`);
    this.name = "FrameTooLargeError";
  }
}

/** Splits a byte stream into frames; partial frames wait for the next chunk. */
export class FrameDecoder {
  private pending: Uint8Array = new Uint8Array(0);

  /**
   * Frames completed by `chunk`, in order. Payloads may be views into `chunk`: copy them before the chunk's
   * memory is reused. Throws FrameTooLargeError on a length over the limit.
   */
  push(chunk: Uint8Array): ShellFrame[] {
    const bytes = this.pending.byteLength === 0 ? chunk : concat(this.pending, chunk);
    const frames: ShellFrame[] = [];
    let offset = 0;
    while (bytes.byteLength - offset >= FRAME_HEADER_BYTES) {
      const view = new DataView(bytes.buffer, bytes.byteOffset + offset, FRAME_HEADER_BYTES);
      const length = view.getUint32(1, false);
      if (length > MAX_FRAME_PAYLOAD) throw new FrameTooLargeError(length);
      if (bytes.byteLength - offset < FRAME_HEADER_BYTES + length) break;
      const start = offset + FRAME_HEADER_BYTES;
      frames.push({ type: view.getUint8(0), payload: bytes.subarray(start, start + length) });
      offset = start + length;
    }
    // Keep a copy of the tail: the caller may reuse the chunk's memory. (new Uint8Array(view) copies; a
    // Buffer's slice() would not.)
    this.pending = offset === bytes.byteLength ? new Uint8Array(0) : new Uint8Array(bytes.subarray(offset));
    return frames;
  }

  /** Bytes of an incomplete frame still waiting for the rest. */
  get buffered(): number {
    return this.pending.byteLength;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a, 0);
  out.set(b, a.byteLength);
  return out;
}

// ---- daemon <-> agent ----

/** The agent route that runs a shell on a pty: request body = client frames, response body = server frames. */
export const SHELL_AGENT_PATH = "/v1/shell";
/** Header carrying the JSON-encoded ShellSpec. */
export const SHELL_SPEC_HEADER = "corral-shell-spec";

export interface ShellSpec {
  /** Run as this user (default root). */
  uid?: number;
  /** Run with this group (default: the user's group from /etc/passwd, else the uid). */
  gid?: number;
  /** The shell: an absolute path or a name looked up on PATH (default: the user's login shell, else /bin/sh). */
  shell?: string;
  /** Working directory (default: the user's home when it exists, else /). */
  cwd?: string;
  cols?: number;
  rows?: number;
}

/**
 * How the shell ended. Between agent and daemon the session-close frame carries this as JSON; the daemon
 * sends the frame on to the client empty (as Slicer's protocol has it) and puts the status in the
 * WebSocket close reason instead (see describeShellExit).
 */
export interface ShellExitStatus {
  exit_code: number;
  signal?: string;
}

/** The WebSocket close reason for a shell that ended: "Shell exited with code 3", "Shell killed by SIGKILL (exit code 137)". */
export function describeShellExit(status: ShellExitStatus): string {
  if (status.signal) return `Shell killed by ${status.signal} (exit code ${status.exit_code})`;
  return `Shell exited with code ${status.exit_code}`;
}

/** Reads a close reason written by describeShellExit back; undefined for any other reason. */
export function parseShellExit(reason: string): ShellExitStatus | undefined {
  const exited = /^Shell exited with code (\d{1,3})$/.exec(reason);
  if (exited) return { exit_code: Number(exited[1]) };
  const killed = /^Shell killed by (SIG[A-Z0-9]+) \(exit code (\d{1,3})\)$/.exec(reason);
  if (killed) return { exit_code: Number(killed[2]), signal: killed[1] as string };
  return undefined;
}

/** WebSocket close codes the daemon uses for shells and forwards (RFC 6455 section 7.4). */
export const CLOSE_CODE = {
  normal: 1000,
  goingAway: 1001,
  protocolError: 1002,
  /** Never sent: how a WebSocket library reports a peer that went away without a close frame. */
  abnormal: 1006,
  messageTooBig: 1009,
  internalError: 1011,
  badGateway: 1014,
} as const;

/** A close reason cut to the 123 bytes a close frame can carry, without splitting a character. */
export function closeReason(text: string): string {
  const encoder = new TextEncoder();
  if (encoder.encode(text).byteLength <= 123) return text;
  const chars = [...text];
  while (encoder.encode(`${chars.join("")}…`).byteLength > 123) chars.pop();
  return `${chars.join("")}…`;
}
