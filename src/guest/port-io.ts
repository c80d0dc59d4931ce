// How VirtioPort moves bytes through the character device: one read result at a time, each only after it was
// asked for (so a full consumer holds the port back), and writes in order.
//
// Two ways, same behaviour. The native relay (corral-native.c's startPortRelay) has two threads of its own do
// the blocking system calls and hands the bytes over through pipes, which libuv polls: no thread-pool round
// trip per 4 KiB read (the most the guest kernel gives per read(2)). Without the addon (an older image, unit
// tests on the host) reads and writes go through libuv's thread pool, as libuv cannot poll the device.
import { read, write } from "node:fs";
import { Socket } from "node:net";
import { getSystemErrorMap } from "node:util";
import type { PortRelay } from "./native.ts";

/** One read result: bytes, or `undefined` when no host is connected (with the error when the read failed). */
export type ReadHandler = (data: Buffer | undefined, err?: Error) => void;

export interface PortIo {
  /** Asks for the next read result: exactly one call of the handler follows. */
  read(): void;
  /** Writes the chunks in order, after everything written before. */
  write(chunks: Buffer[], done: (err?: Error | null) => void): void;
}

const READ_SIZE = 64 * 1024;
// While no host is connected a read returns 0 at once and the kernel has no "host connected" event: retry
// with a backoff (after a daemon restart, or right after a snapshot restore).
const IDLE_RETRY_MIN_MS = 10;
const IDLE_RETRY_MAX_MS = 250;

/** Reads and writes on libuv's thread pool, one system call per round trip. */
export class ThreadPoolIo implements PortIo {
  private idleDelay = 0;

  constructor(
    private readonly fd: number,
    private readonly onRead: ReadHandler,
  ) {}

  read(): void {
    if (this.idleDelay === 0) return this.readNow();
    setTimeout(() => this.readNow(), this.idleDelay);
    this.idleDelay = Math.min(this.idleDelay * 2, IDLE_RETRY_MAX_MS);
  }

  write(chunks: Buffer[], done: (err?: Error | null) => void): void {
    this.writeAll(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks), done);
  }

  private writeAll(data: Buffer, done: (err?: Error | null) => void): void {
    write(this.fd, data, 0, data.length, null, (err, written) => {
      if (err) return done(err);
      if (written < data.length) return this.writeAll(data.subarray(written), done);
      done();
    });
  }

  private readNow(): void {
    const buffer = Buffer.allocUnsafe(READ_SIZE);
    read(this.fd, buffer, 0, READ_SIZE, null, (err, bytes) => {
      if (err || bytes === 0) {
        // 0: no host is connected. An error (ENODEV: port unplugged) is treated the same way.
        if (this.idleDelay === 0) this.idleDelay = IDLE_RETRY_MIN_MS;
        return this.onRead(undefined, err ?? undefined);
      }
      this.idleDelay = 0;
      this.onRead(buffer.subarray(0, bytes));
    });
  }
}

const FRAME_HEADER = 4;

/** The error a read that failed with `status` (-errno) would have given, as node words it. */
export function readError(status: number): Error {
  const [code, description] = getSystemErrorMap().get(status) ?? [`E${-status}`, "unknown error"];
  return Object.assign(new Error(`${code}: ${description}, read`), { errno: status, code, syscall: "read" });
}

/**
 * Reads and writes through the native relay's pipes. The reader's frames (see corral-native.c) are handed out
 * one per read(); the pipe is paused while a frame waits for the consumer, so the relay thread blocks on the
 * full pipe and stops reading the port.
 */
export class RelayIo implements PortIo {
  private readonly frames: Socket;
  private readonly sink: Socket;
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private wanted = false;
  private delivering = false;

  constructor(
    relay: PortRelay,
    private readonly onRead: ReadHandler,
  ) {
    this.frames = new Socket({ fd: relay.reads, readable: true, writable: false });
    this.frames.on("data", (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      this.deliver();
    });
    // The relay thread only stops when its pipe closes, which the agent never does: report it as a read error.
    this.frames.on("error", (err) => this.onRead(undefined, err));
    this.frames.pause();
    this.sink = new Socket({ fd: relay.writes, readable: false, writable: true });
    this.sink.on("error", () => undefined); // reported to each write's callback
  }

  read(): void {
    this.wanted = true;
    this.deliver();
  }

  // One writev(2) for the lot (an HTTP/2 frame's header and payload), without copying them together.
  write(chunks: Buffer[], done: (err?: Error | null) => void): void {
    this.sink.cork();
    for (let i = 0; i < chunks.length - 1; i++) this.sink.write(chunks[i] as Buffer);
    this.sink.write(chunks[chunks.length - 1] as Buffer, done);
    this.sink.uncork();
  }

  private deliver(): void {
    if (this.delivering) return; // a handler asking for the next result: the loop below gives it
    this.delivering = true;
    while (this.wanted) {
      const frame = this.nextFrame();
      if (frame === undefined) break;
      this.wanted = false;
      if (frame.status > 0) this.onRead(frame.data);
      else this.onRead(undefined, frame.status < 0 ? readError(frame.status) : undefined);
    }
    this.delivering = false;
    if (this.wanted) this.frames.resume();
    else this.frames.pause();
  }

  private nextFrame(): { status: number; data: Buffer } | undefined {
    if (this.buffered < FRAME_HEADER) return undefined;
    const status = this.peek(FRAME_HEADER).readInt32LE(0);
    const length = FRAME_HEADER + Math.max(status, 0);
    if (this.buffered < length) return undefined;
    return { status, data: this.take(length).subarray(FRAME_HEADER) };
  }

  private peek(length: number): Buffer {
    const first = this.chunks[0] as Buffer;
    if (first.length >= length) return first;
    const joined = Buffer.concat(this.chunks);
    this.chunks.splice(0, this.chunks.length, joined);
    return joined;
  }

  private take(length: number): Buffer {
    const first = this.peek(length);
    this.buffered -= length;
    if (first.length === length) this.chunks.shift();
    else this.chunks[0] = first.subarray(length);
    return first.subarray(0, length);
  }
}
