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
}

export async function startQemu(spec: QemuSpec, options: StartQemuOptions): Promise<StartedQemu> {
  const proc = await QemuProcess.spawn(options.binary, buildQemuArgs(spec), options.logFile, { gid: options.gid });
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
