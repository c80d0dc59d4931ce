// An interactive shell in a VM (GET /vm/HOST/shell): a WebSocket speaking Slicer's binary frames.
//   const session = await client.shell("sbox-1", { cols: 120, rows: 40 });
//   session.write("echo hi\r");
//   for await (const chunk of session) process.stdout.write(chunk);
//   const { code } = await session.exit;
import type WebSocket from "ws";
import { CLOSE_CODE, encodeFrame, encodeWindowSize, FRAME_TYPE, FrameDecoder, parseShellExit } from "../protocol/shell.ts";
import { queryString, type ClientOptions } from "./transport.ts";
import { openWebSocket } from "./websocket.ts";

export interface ShellOptions {
  /** Run as this user id (default root). */
  uid?: number;
  gid?: number;
  /** The shell (default: the user's login shell, else /bin/sh). */
  shell?: string;
  /** Working directory (default: the user's home). */
  cwd?: string;
  /** Initial terminal size, sent right after the session opens. */
  cols?: number;
  rows?: number;
  /** Heartbeat interval (default 30 s; 0 for none). */
  heartbeatMs?: number;
  signal?: AbortSignal;
}

export interface ShellExit {
  /** The shell's exit code (128 + N when killed by signal N); null when the session ended otherwise. */
  code: number | null;
  signal?: string;
  /** The WebSocket close code and reason (the reason says how the session ended). */
  closeCode: number;
  reason: string;
}

/** Unread output beyond which reading from the daemon pauses until the iterator catches up. */
const QUEUE_HIGH = 1024 * 1024;
const QUEUE_LOW = 256 * 1024;
/** Unsent input beyond which write() returns false. */
const SEND_HIGH = 1024 * 1024;
/** Input is sent in frames of at most this many bytes. */
const MAX_DATA_FRAME = 64 * 1024;

export class ShellSession implements AsyncIterable<Buffer> {
  /** Resolves when the session is over, however it ended. */
  readonly exit: Promise<ShellExit>;
  private readonly listeners = new Set<(chunk: Buffer) => void>();
  private early: Buffer[] = [];
  private queue: Buffer[] = [];
  private queued = 0;
  private iterating = false;
  private wake: (() => void) | undefined;
  private done = false;
  private readonly heartbeat: NodeJS.Timeout | undefined;
  private drainWaiters: (() => void)[] = [];

  constructor(
    private readonly ws: WebSocket,
    options: ShellOptions = {},
  ) {
    const decoder = new FrameDecoder();
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      for (const frame of decoder.push(data)) {
        if (frame.type === FRAME_TYPE.data) this.deliver(Buffer.from(frame.payload));
      }
    });
    this.exit = new Promise((resolve) => {
      ws.once("close", (closeCode: number, reasonBytes: Buffer) => {
        const reason = reasonBytes.toString("utf8");
        const status = parseShellExit(reason);
        this.finish();
        resolve(status ? { code: status.exit_code, ...(status.signal ? { signal: status.signal } : {}), closeCode, reason } : { code: null, closeCode, reason });
      });
    });
    ws.on("error", () => undefined); // "close" follows with the details
    const interval = options.heartbeatMs ?? 30_000;
    if (interval > 0) {
      this.heartbeat = setInterval(() => this.send(encodeFrame(FRAME_TYPE.heartbeat)), interval);
      this.heartbeat.unref();
    }
    if (options.cols && options.rows) this.resize(options.cols, options.rows);
  }

  /** Sends keystrokes (or any bytes) to the shell. False when the connection is backed up (see drained()). */
  write(data: string | Uint8Array): boolean {
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    for (let offset = 0; offset < bytes.byteLength; offset += MAX_DATA_FRAME) {
      this.send(encodeFrame(FRAME_TYPE.data, bytes.subarray(offset, offset + MAX_DATA_FRAME)));
    }
    return this.ws.bufferedAmount < SEND_HIGH;
  }

  /** Resolves once the input sent so far is (mostly) on its way. */
  drained(): Promise<void> {
    if (this.ws.bufferedAmount < SEND_HIGH || this.ws.readyState !== this.ws.OPEN) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Tells the shell its terminal's size (a window-size frame). */
  resize(cols: number, rows: number): void {
    if (!Number.isInteger(cols) || !Number.isInteger(rows) || cols < 1 || rows < 1) {
      throw new RangeError(`Invalid terminal size ${cols}x${rows}: both must be positive integers`);
    }
    this.send(encodeWindowSize(cols, rows));
  }

  /** Calls `listener` with each piece of output; returns a function that stops it. */
  onData(listener: (chunk: Buffer) => void): () => void {
    this.listeners.add(listener);
    this.flushEarly();
    return () => this.listeners.delete(listener);
  }

  /** Ends the session: the shell and everything it started in its session are killed. */
  close(): void {
    if (this.ws.readyState === this.ws.OPEN) {
      this.send(encodeFrame(FRAME_TYPE.shutdown));
      this.ws.close(CLOSE_CODE.normal, "Client closed the session");
    } else if (this.ws.readyState === this.ws.CONNECTING) {
      this.ws.terminate();
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    if (this.iterating) throw new Error("A shell session's output can be iterated once at a time");
    this.iterating = true;
    this.flushEarly();
    try {
      for (;;) {
        const chunk = this.queue.shift();
        if (chunk) {
          this.queued -= chunk.length;
          if (this.queued <= QUEUE_LOW && this.ws.isPaused) this.ws.resume();
          yield chunk;
          continue;
        }
        if (this.done) return;
        await new Promise<void>((resolve) => (this.wake = resolve));
      }
    } finally {
      this.iterating = false;
    }
  }

  private send(frame: Uint8Array): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    this.ws.send(frame, { binary: true }, () => {
      if (this.ws.bufferedAmount >= SEND_HIGH) return;
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const resolve of waiters) resolve();
    });
  }

  private deliver(chunk: Buffer): void {
    if (this.listeners.size === 0 && !this.iterating) {
      this.early.push(chunk);
      this.queued += chunk.length;
      if (this.queued > QUEUE_HIGH) this.ws.pause();
      return;
    }
    for (const listener of this.listeners) listener(chunk);
    if (this.iterating) this.enqueue(chunk);
  }

  private enqueue(chunk: Buffer): void {
    this.queue.push(chunk);
    this.queued += chunk.length;
    if (this.queued > QUEUE_HIGH) this.ws.pause();
    this.wake?.();
    this.wake = undefined;
  }

  /** Output that arrived before anyone listened goes to the first consumer. */
  private flushEarly(): void {
    const early = this.early;
    if (early.length === 0) return;
    this.early = [];
    this.queued = 0;
    for (const chunk of early) {
      for (const listener of this.listeners) listener(chunk);
      if (this.iterating) this.enqueue(chunk);
    }
    if (this.queued <= QUEUE_LOW && this.ws.isPaused) this.ws.resume();
  }

  private finish(): void {
    this.done = true;
    clearInterval(this.heartbeat);
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const resolve of waiters) resolve();
    this.wake?.();
    this.wake = undefined;
  }
}

export function shellPath(hostname: string, options: ShellOptions): string {
  return `/vm/${encodeURIComponent(hostname)}/shell${queryString({ uid: options.uid, gid: options.gid, shell: options.shell, cwd: options.cwd })}`;
}

/** Opens a shell session; rejects with CorralApiError when the daemon refuses (404, 409, 400, 401). */
export async function openShell(client: ClientOptions, hostname: string, options: ShellOptions = {}): Promise<ShellSession> {
  const ws = await openWebSocket(client, shellPath(hostname, options), {}, options.signal);
  return new ShellSession(ws, options);
}
