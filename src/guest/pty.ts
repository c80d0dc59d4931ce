// A process on a pseudo-terminal, through node-pty's native addon (the image has it at PTY_ADDON_PATH; the
// agent is one bundled file, so the addon is loaded by its path instead of through node-pty's JavaScript).
//
// Reading: the master fd is wrapped in a tty.ReadStream, which libuv watches with epoll (no polling); when
// the consumer is full the stream is paused, the pty fills up and the program blocks on its writes.
// Writing: libuv treats a pty master as a "blocking writes" tty and would spin on EAGAIN inside the event
// loop, so writes go straight to the non-blocking fd; when the terminal's input buffer is full (the program
// is not reading) the remaining bytes are retried on a backoff timer, and the caller is told to stop sending.
import { EventEmitter } from "node:events";
import { writeSync } from "node:fs";
import { createRequire } from "node:module";
import { constants as osConstants } from "node:os";
import { ReadStream } from "node:tty";

export const PTY_ADDON_PATH = "/opt/corral/pty.node";

interface PtyAddon {
  fork(
    file: string,
    args: string[],
    env: string[],
    cwd: string,
    cols: number,
    rows: number,
    uid: number,
    gid: number,
    useUtf8: boolean,
    helperPath: string,
    onExit: (code: number, signal: number) => void,
  ): { fd: number; pid: number; pty: string };
  resize(fd: number, cols: number, rows: number): void;
}

export function loadPtyAddon(path: string = PTY_ADDON_PATH): PtyAddon {
  return createRequire(import.meta.url)(path) as PtyAddon;
}

export interface PtySpawn {
  file: string;
  args: string[];
  env: Record<string, string>;
  cwd: string;
  cols: number;
  rows: number;
  /** Both or neither: the addon switches user only when both are given. */
  user?: { uid: number; gid: number };
}

export interface PtyExit {
  code: number;
  /** The signal's name when the program was killed by one. */
  signal?: NodeJS.Signals;
}

/** Queued input beyond which write() asks the caller to wait for "drain". */
const WRITE_HIGH_WATER = 64 * 1024;
const RETRY_FIRST_MS = 1;
const RETRY_MAX_MS = 50;

function signalName(number: number): NodeJS.Signals | undefined {
  if (number === 0) return undefined;
  const entry = Object.entries(osConstants.signals).find(([, value]) => value === number);
  return entry?.[0] as NodeJS.Signals | undefined;
}

/**
 * One program on its own pty (it leads a new session: forkpty calls setsid). Emits "data" (Buffer),
 * "drain" (input accepted again) and "end" (no more output: the terminal hung up or was closed).
 */
export class PtyProcess extends EventEmitter {
  readonly pid: number;
  readonly exited: Promise<PtyExit>;
  private readonly fd: number;
  private readonly output: ReadStream;
  private readonly queue: Buffer[] = [];
  private queued = 0;
  private retryDelay = RETRY_FIRST_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private ended = false;

  constructor(
    private readonly addon: PtyAddon,
    spawn: PtySpawn,
  ) {
    super();
    let resolveExit!: (exit: PtyExit) => void;
    this.exited = new Promise((resolve) => (resolveExit = resolve));
    const env = Object.entries(spawn.env).map(([key, value]) => `${key}=${value}`);
    const uid = spawn.user?.uid ?? -1;
    const gid = spawn.user?.gid ?? -1;
    // The exit callback comes from a thread blocked in waitpid (no polling either).
    const term = addon.fork(spawn.file, spawn.args, env, spawn.cwd, spawn.cols, spawn.rows, uid, gid, true, "", (code, signal) => {
      const name = signalName(signal);
      resolveExit(name ? { code: 128 + signal, signal: name } : { code });
    });
    this.pid = term.pid;
    this.fd = term.fd;
    this.output = new ReadStream(term.fd);
    this.output.on("data", (chunk: Buffer) => this.emit("data", chunk));
    // EIO once every holder of the terminal's other side has closed it: the usual end of output.
    this.output.on("error", () => this.finishOutput());
    this.output.on("end", () => this.finishOutput());
    this.output.on("close", () => this.finishOutput());
  }

  /** Stops reading output (the program blocks once the pty is full) until resume(). */
  pause(): void {
    if (!this.closed) this.output.pause();
  }

  resume(): void {
    if (!this.closed) this.output.resume();
  }

  get outputEnded(): boolean {
    return this.ended;
  }

  /** Queues input for the program; false means wait for "drain" before writing more. */
  write(data: Uint8Array): boolean {
    if (this.closed || data.byteLength === 0) return true;
    this.queue.push(Buffer.from(data));
    this.queued += data.byteLength;
    if (this.retryTimer === undefined) this.flush();
    return this.queued < WRITE_HIGH_WATER;
  }

  resize(cols: number, rows: number): void {
    if (this.closed) return;
    try {
      this.addon.resize(this.fd, cols, rows);
    } catch {
      // the terminal is already gone
    }
  }

  /** Sends `signal` to every process of the program's session (its jobs included), the program first. */
  signalSession(signal: NodeJS.Signals, members: readonly number[]): void {
    for (const pid of [this.pid, ...members.filter((p) => p !== this.pid)]) {
      try {
        process.kill(pid, signal);
      } catch {
        // already gone
      }
    }
  }

  /** Closes the master side (the terminal hangs up); no more input or output. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.queue.length = 0;
    this.queued = 0;
    this.output.destroy(); // closes the fd: nothing may touch it after this
    this.finishOutput();
  }

  private finishOutput(): void {
    if (this.ended) return;
    this.ended = true;
    this.emit("end");
  }

  private flush(): void {
    this.retryTimer = undefined;
    while (!this.closed && this.queue.length > 0) {
      const head = this.queue[0] as Buffer;
      let written: number;
      try {
        written = writeSync(this.fd, head);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EAGAIN") {
          // The program is not reading its input: try again later, backing off.
          this.retryTimer = setTimeout(() => this.flush(), this.retryDelay);
          this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
          return;
        }
        // EIO and the like: the terminal is gone, and its input with it.
        this.queue.length = 0;
        this.queued = 0;
        break;
      }
      this.retryDelay = RETRY_FIRST_MS;
      this.queued -= written;
      if (written === head.byteLength) this.queue.shift();
      else this.queue[0] = head.subarray(written);
    }
    if (this.queued < WRITE_HIGH_WATER) this.emit("drain");
  }
}
