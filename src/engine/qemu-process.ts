// QEMU processes: started detached (in their own session) so they outlive a daemon killed with -9, and
// found again after a restart by pid plus kernel start time (a recycled pid has a different start time).
import { spawn } from "node:child_process";
import { closeSync, openSync, readdirSync, readFileSync } from "node:fs";
import { processAlive } from "../util/process-alive.ts";

export interface ExitInfo {
  /** null when the process was not ours to wait for (re-attached after a restart) or died of a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The process start time in clock ticks since boot (field 22 of /proc/PID/stat), or undefined if gone. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may contain spaces; fields after it are plain.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[19];
  } catch {
    return undefined;
  }
}

/** Linux's USER_HZ: /proc/PID/stat counts CPU time in these ticks on every architecture Corral runs on. */
const TICKS_PER_SECOND = 100;

/** When this machine booted, in seconds since the epoch (`btime` of /proc/stat); read once. */
let bootTime: number | undefined;
function bootTimeSeconds(): number | undefined {
  if (bootTime === undefined) {
    try {
      const line = /^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"));
      bootTime = line ? Number(line[1]) : undefined;
    } catch {
      return undefined;
    }
  }
  return bootTime;
}

/** When a process started (boot time plus its start in clock ticks), to the tick; undefined if it is gone. */
export function processStartedAt(pid: number): Date | undefined {
  const ticks = processStartTime(pid);
  const boot = bootTimeSeconds();
  if (ticks === undefined || boot === undefined || !/^\d+$/.test(ticks)) return undefined;
  return new Date(Math.round((boot + Number(ticks) / TICKS_PER_SECOND) * 1000));
}

/** CPU time (user + system) a process has used, in nanoseconds; undefined if it is gone. */
export function processCpuNanoseconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(fields[11]) + Number(fields[12])) * 1e9) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

export function processCommandLine(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((a) => a.length > 0);
  } catch {
    return undefined;
  }
}

/** Processes whose command line contains an argument that includes `needle`. */
export function findProcessesWithArgument(needle: string): { pid: number; args: string[] }[] {
  const found: { pid: number; args: string[] }[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const args = processCommandLine(pid);
    if (args?.some((a) => a.includes(needle))) found.push({ pid, args });
  }
  return found;
}

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
