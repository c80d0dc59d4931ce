// QEMU processes: started detached (in their own session) so they outlive a daemon killed with -9, and
// found again after a restart by pid plus kernel start time (a recycled pid has a different start time).
import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { processStartTime } from "../process-info.ts";
import { processAlive } from "../../util/process-alive.ts";
import type { ExitInfo } from "../machine.ts";

export class QemuProcess {
  readonly exited: Promise<ExitInfo>;
  private resolveExit!: (info: ExitInfo) => void;
  private hasExited = false;
  private watching = false;
  private pollMs = Number.POSITIVE_INFINITY;
  private wakePoll: (() => void) | undefined;
  private sent: NodeJS.Signals | undefined;

  private constructor(
    readonly pid: number,
    readonly startTime: string,
    readonly ownChild: boolean,
  ) {
    this.exited = new Promise((resolve) => {
      this.resolveExit = (info) => {
        if (this.hasExited) return;
        this.hasExited = true;
        resolve(info);
      };
    });
  }

  /**
   * Starts QEMU detached with stdout and stderr appended to `logFile`; with `gid`, under that group id (the
   * user stays the same, so file access is unchanged, but every socket QEMU opens carries the group).
   */
  static spawn(binary: string, args: readonly string[], logFile: string, options: { gid?: number } = {}): Promise<QemuProcess> {
    const logFd = openSync(logFile, "a", 0o600);
    return new Promise((resolve, reject) => {
      const child = spawn(binary, args, { detached: true, stdio: ["ignore", logFd, logFd], ...(options.gid === undefined ? {} : { gid: options.gid }) });
      closeSync(logFd);
      child.once("error", (err) => reject(err));
      child.once("spawn", () => {
        const pid = child.pid as number;
        const proc = new QemuProcess(pid, processStartTime(pid) ?? "", true);
        child.once("exit", (code, signal) => proc.resolveExit({ code, signal }));
        child.unref();
        resolve(proc);
      });
    });
  }

  /** Re-attaches to a QEMU started by an earlier daemon, if that very process is still running. */
  static attach(pid: number, startTime: string): QemuProcess | undefined {
    if (processStartTime(pid) !== startTime) return undefined;
    const proc = new QemuProcess(pid, startTime, false);
    proc.watchUntilGone(5000);
    return proc;
  }

  get running(): boolean {
    return !this.hasExited && processAlive(this.pid) && (this.ownChild || processStartTime(this.pid) === this.startTime);
  }

  /**
   * A hint that the process may have exited (its QMP socket closed). Our own children report their exit
   * themselves; a re-attached process is not our child, so we look until it is gone.
   */
  maybeExited(): void {
    if (!this.ownChild) this.watchUntilGone(50);
  }

  /** The last signal this process was sent by us: a death by any other came from elsewhere (a crash, the OOM killer). */
  get signalSent(): NodeJS.Signals | undefined {
    return this.sent;
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    if (this.hasExited) return;
    this.sent = signal;
    try {
      process.kill(this.pid, signal);
    } catch {
      // already gone
    }
    if (!this.ownChild) this.watchUntilGone(20);
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  async terminate(graceMs = 2000): Promise<ExitInfo> {
    this.kill("SIGTERM");
    const timer = setTimeout(() => this.kill("SIGKILL"), graceMs);
    const info = await this.exited;
    clearTimeout(timer);
    return info;
  }

  /** Polls /proc until the process is gone; a later call with a shorter interval takes effect at once. */
  private watchUntilGone(intervalMs: number): void {
    this.pollMs = Math.min(this.pollMs, intervalMs);
    this.wakePoll?.();
    if (this.watching) return;
    this.watching = true;
    void (async () => {
      while (!this.hasExited) {
        if (processStartTime(this.pid) !== this.startTime) {
          this.resolveExit({ code: null, signal: null });
          break;
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, this.pollMs);
          timer.unref();
          this.wakePoll = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    })();
  }
}
