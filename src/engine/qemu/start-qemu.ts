// Starts QEMU for a spec and connects to its QMP socket. If QEMU dies on the way, the error carries the
// end of its own log (bad arguments, missing files), not a bare exit code.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { buildQemuArgs, type QemuSpec } from "./qemu-args.ts";
import { QemuProcess } from "./qemu-process.ts";
import { QmpClient } from "./qmp-client.ts";

export const QEMU_BINARY = "qemu-system-x86_64";

export interface StartedQemu {
  process: QemuProcess;
  qmp: QmpClient;
}

export class QemuStartError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "QemuStartError";
  }
}

async function logTail(file: string): Promise<string> {
  try {
    return (await readFile(file, "utf8")).trim().split("\n").slice(-3).join(" | ");
  } catch {
    return "";
  }
}

export interface StartQemuOptions {
  binary: string;
  logFile: string;
  qmpTranscript: string;
  /** How long QEMU may take to open its QMP socket. */
  timeoutMs?: number;
  /** The group id QEMU runs with (the daemon's wall between guests and the host keys on it); absent: the daemon's. */
  gid?: number;
  /**
   * argv QEMU is exec'd through, e.g. ["unshare", "--net", "--"] for a NIC in the VM's own network namespace.
   * It must exec (not fork) QEMU: the pid, its start time and /proc/PID/cmdline are then QEMU's.
   */
  argvPrefix?: readonly string[];
}

/** The program to spawn and its arguments: QEMU itself, or the prefix's first word with the rest before QEMU's argv. */
export function qemuCommand(binary: string, args: readonly string[], prefix: readonly string[]): [string, string[]] {
  const [first, ...rest] = prefix;
  return first === undefined ? [binary, [...args]] : [first, [...rest, binary, ...args]];
}

export async function startQemu(spec: QemuSpec, options: StartQemuOptions): Promise<StartedQemu> {
  const [command, argv] = qemuCommand(options.binary, buildQemuArgs(spec), options.argvPrefix ?? []);
  const proc = await QemuProcess.spawn(command, argv, options.logFile, { gid: options.gid });
  const deadline = performance.now() + (options.timeoutMs ?? 15_000);
  let exited = false;
  void proc.exited.then(() => {
    exited = true;
  });
  for (;;) {
    if (exited) {
      const tail = await logTail(options.logFile);
      throw new QemuStartError(`QEMU exited during start-up${tail ? `: ${tail}` : ""}`);
    }
    if (existsSync(spec.qmpSocket)) {
      try {
        const qmp = await QmpClient.connect(spec.qmpSocket, { transcript: options.qmpTranscript });
        return { process: proc, qmp };
      } catch (err) {
        if (performance.now() > deadline) {
          proc.kill();
          throw new QemuStartError("QEMU's QMP socket did not answer", { cause: err });
        }
      }
    }
    if (performance.now() > deadline) {
      proc.kill();
      throw new QemuStartError("QEMU did not open its QMP socket in time");
    }
    // QEMU opens its QMP socket some 20 ms after it starts (more under load): a short poll costs nothing.
    await sleep(2);
  }
}
