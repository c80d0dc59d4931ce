// One background job: a command started in its own process group, detached from any request. Its output
// is read as fast as it comes (a job never blocks on a slow reader) into the job's frame ring, where log
// readers pick it up; the exit frame is always the last one.
import { spawn, type ChildProcess } from "node:child_process";
import { statSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { StringDecoder } from "node:string_decoder";
import type { Readable } from "node:stream";
import type { ExecFrame, ExecSpec } from "../../protocol/agent.ts";
import type { BackgroundInfo, JobState, KillResult, WaitExit } from "../../protocol/jobs.ts";
import { commandLine } from "../exec.ts";
import { AgentRouteError } from "../http.ts";
import { guestEnvironment } from "../users.ts";
import { FrameRing } from "./frame-ring.ts";

/** A frame as the ring keeps it: output raw until sent, so base64 costs nothing while it waits. */
export interface StoredFrame {
  type: ExecFrame["type"];
  timestamp: string;
  /** stdout/stderr frames: the bytes (base64 jobs) or the decoded text (text jobs). */
  output?: Buffer | string;
  fields?: Partial<ExecFrame>;
}

/** How long output may still arrive after the command exited before the exit frame closes the log. */
const PIPE_GRACE_MS = 250;
/** Largest output frame, so even a small ring holds several. */
const MAX_FRAME_BYTES = 64 * 1024;

function signalNumber(name: string): number {
  return (osConstants.signals as Record<string, number>)[name] ?? 0;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function startError(err: NodeJS.ErrnoException, file: string): AgentRouteError {
  if (err.code === "ENOENT") return new AgentRouteError(400, "invalid_request", `Cannot start ${JSON.stringify(file)}: command not found`);
  if (err.code === "EACCES") return new AgentRouteError(400, "invalid_request", `Cannot start ${JSON.stringify(file)}: it is not executable`);
  return new AgentRouteError(400, "invalid_request", `Cannot start ${JSON.stringify(file)}: ${err.message}`);
}

export class BackgroundJob {
  readonly ring: FrameRing<StoredFrame>;
  readonly startedAt = new Date().toISOString();
  private endedAt: string | undefined;
  private exitCode: number | undefined;
  private exitSignal: string | undefined;
  private escalation: NodeJS.Timeout | undefined;
  private readonly exited: Promise<void>;

  private constructor(
    readonly id: string,
    readonly spec: ExecSpec,
    ringBytes: number,
    private readonly child: ChildProcess,
  ) {
    this.ring = new FrameRing(ringBytes);
    this.ring.append({ type: "started", timestamp: this.startedAt, fields: { pid: child.pid, started_at: this.startedAt } }, 0);
    this.exited = this.collect();
  }

  /** Starts the command; a command that cannot start is a 400 naming why (no job is created). */
  static async start(id: string, spec: ExecSpec, ringBytes: number): Promise<BackgroundJob> {
    const { file, args } = commandLine(spec);
    if (spec.cwd !== undefined && !isDirectory(spec.cwd)) {
      throw new AgentRouteError(400, "invalid_request", `Cannot start ${JSON.stringify(file)}: the working directory ${JSON.stringify(spec.cwd)} does not exist`);
    }
    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        cwd: spec.cwd,
        env: guestEnvironment(spec.uid ?? 0, spec.env),
        uid: spec.uid,
        gid: spec.gid ?? spec.uid,
        detached: true, // its own process group: kill reaches everything it started
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (err) {
      throw startError(err as NodeJS.ErrnoException, file);
    }
    const failure = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      child.once("spawn", () => resolve(undefined));
      child.once("error", (err: NodeJS.ErrnoException) => resolve(err));
    });
    if (failure) throw startError(failure, file);
    child.on("error", () => undefined); // after a successful start, failures show in the exit status
    return new BackgroundJob(id, spec, ringBytes, child);
  }

  get pid(): number {
    return this.child.pid as number;
  }

  get state(): JobState {
    return this.endedAt === undefined ? "running" : "exited";
  }

  get running(): boolean {
    return this.endedAt === undefined;
  }

  /** True while the command's process is alive (the job may still be collecting its last output). */
  private get processAlive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  info(): BackgroundInfo {
    const info: BackgroundInfo = {
      exec_id: this.id,
      pid: this.pid,
      command: this.spec.cmd,
      args: this.spec.args,
      state: this.state,
      running: this.running,
      started_at: this.startedAt,
      bytes_written: this.ring.bytesWritten,
      bytes_dropped: this.ring.bytesDropped,
      frames_dropped: this.ring.framesDropped,
      next_id: this.ring.nextId,
      ring_bytes: this.ring.capacity,
    };
    if (this.spec.cwd !== undefined) info.cwd = this.spec.cwd;
    if (this.spec.uid !== undefined) info.uid = this.spec.uid;
    if (this.spec.gid !== undefined) info.gid = this.spec.gid;
    if (this.spec.shell !== undefined) info.shell = this.spec.shell;
    if (this.spec.stdio === "base64") info.encoding = "base64";
    return { ...info, ...this.outcome() };
  }

  /**
   * Sends `signal` to the job's process group; unless it is SIGKILL, SIGKILL follows after `graceMs` if the
   * command is still alive. A job that has exited is left alone (its process group may belong to someone
   * else by now).
   */
  kill(signal: string, graceMs: number): KillResult {
    if (!this.processAlive) return { exec_id: this.id, pid: this.pid, running: this.running, signal_sent: "" };
    this.signalGroup(signal);
    if (signal !== "SIGKILL" && this.escalation === undefined) {
      this.escalation = setTimeout(() => {
        if (this.processAlive) this.signalGroup("SIGKILL");
      }, graceMs);
      this.escalation.unref();
    }
    return { exec_id: this.id, pid: this.pid, running: this.running, signal_sent: signal };
  }

  /** Resolves with the job's state once it exited or `timeoutMs` passed (or `signal` aborted). */
  async waitExit(timeoutMs: number, signal: AbortSignal): Promise<WaitExit> {
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    await Promise.race([
      this.exited,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        onAbort = resolve;
        signal.addEventListener("abort", onAbort, { once: true });
      }),
    ]);
    clearTimeout(timer);
    if (onAbort) signal.removeEventListener("abort", onAbort);
    return { exec_id: this.id, running: this.running, state: this.state, timed_out: this.running, ...this.outcome() };
  }

  /** Forgets the job: a command still running is killed with its process group, log readers finish. */
  dispose(): void {
    if (this.processAlive) this.signalGroup("SIGKILL");
    clearTimeout(this.escalation);
    this.ring.close();
  }

  private outcome(): Pick<WaitExit, "exit_code" | "signal" | "ended_at"> {
    if (this.endedAt === undefined) return {};
    const outcome: Pick<WaitExit, "exit_code" | "signal" | "ended_at"> = { exit_code: this.exitCode as number, ended_at: this.endedAt };
    if (this.exitSignal) outcome.signal = this.exitSignal;
    return outcome;
  }

  private signalGroup(signal: string): void {
    try {
      process.kill(-this.pid, signal as NodeJS.Signals);
    } catch {
      // the group is already gone
    }
  }

  /** Reads both pipes into the ring until the command exited and its pipes closed (or went quiet). */
  private async collect(): Promise<void> {
    const exit = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => this.child.once("exit", (code, name) => resolve([code, name])));
    const pipes = Promise.all([this.pump(this.child.stdout, "stdout"), this.pump(this.child.stderr, "stderr")]);
    const [code, name] = await exit;
    clearTimeout(this.escalation);
    // A process the command left behind may hold the pipes open (`sh -c "server &"`): the log ends anyway.
    const grace = setTimeout(() => {
      this.child.stdout?.destroy();
      this.child.stderr?.destroy();
    }, PIPE_GRACE_MS);
    await pipes;
    clearTimeout(grace);
    this.endedAt = new Date().toISOString();
    if (name) {
      this.exitCode = 128 + signalNumber(name);
      this.exitSignal = name;
    } else {
      this.exitCode = code ?? 0;
    }
    if (!this.ring.closed) {
      this.ring.append({ type: "exit", timestamp: this.endedAt, fields: { exit_code: this.exitCode, ended_at: this.endedAt, ...(name ? { signal: name } : {}) } }, 0);
    }
  }

  private async pump(stream: Readable | null, type: "stdout" | "stderr"): Promise<void> {
    if (!stream) return;
    const base64 = this.spec.stdio === "base64";
    const decoder = new StringDecoder("utf8");
    const maxFrame = Math.max(1, Math.min(MAX_FRAME_BYTES, Math.floor(this.ring.capacity / 4)));
    const add = (output: Buffer | string, bytes: number): void => {
      if (bytes === 0 || this.ring.closed) return;
      this.ring.append({ type, timestamp: new Date().toISOString(), output }, bytes);
    };
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        for (let at = 0; at < chunk.length; at += maxFrame) {
          const piece = chunk.subarray(at, at + maxFrame);
          if (base64) add(Buffer.from(piece), piece.length);
          else {
            const text = decoder.write(piece);
            add(text, Buffer.byteLength(text));
          }
        }
      }
    } catch {
      // destroyed after the grace period
    }
    if (!base64) {
      const rest = decoder.end();
      add(rest, Buffer.byteLength(rest));
    }
  }
}
