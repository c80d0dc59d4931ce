// What /proc says about a machine's process, whichever engine runs it: its start time (a pid's identity
// across a daemon restart), its command line, its CPU time, and the processes naming a path.
import { readdirSync, readFileSync } from "node:fs";

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
    return readFileSync(`/proc/${pid}/cmdline`, "utf8")
      .split("\0")
      .filter((a) => a.length > 0);
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
