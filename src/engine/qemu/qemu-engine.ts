// QEMU as an Engine: microvm machines started from a spec (see qemu-args.ts), re-attached by pid and start
// time after a daemon restart, under the accelerator the probe chose (see accel-probe.ts).
import { statSync } from "node:fs";
import { findProgram } from "../../util/run.ts";
import type { Engine, Machine, MachineFiles, MachineSpec, RecordedMachine, StartOptions } from "../machine.ts";
import { findProcessesWithArgument } from "../process-info.ts";
import type { AccelVerdict } from "./accel-probe.ts";
import { QEMU_CAPABILITIES, QemuMachine } from "./qemu-machine.ts";
import { QemuProcess } from "./qemu-process.ts";
import { QmpClient } from "./qmp-client.ts";
import type { QemuSpec } from "./qemu-args.ts";
import { startQemu } from "./start-qemu.ts";

/** QEMU's spec for a machine: the seam's spec with the accelerator and QEMU's own files. */
export function qemuSpecOf(spec: MachineSpec, files: Pick<MachineFiles, "control" | "pidFile">, accel: Pick<AccelVerdict, "accel" | "kvmCpu">): QemuSpec {
  return { ...spec, accel: accel.accel, kvmCpu: accel.kvmCpu, qmpSocket: files.control, pidFile: files.pidFile };
}

export class QemuEngine implements Engine {
  readonly name = "qemu";
  readonly capabilities = QEMU_CAPABILITIES;
  /** Changes when the QEMU binary does: an upgrade may not load an older version's saved state. */
  readonly identity: string;

  /** Put before every QEMU command line (and before the caller's own prefix): see memory-merge.ts. */
  private readonly launchPrefix: readonly string[];

  constructor(
    private readonly options: {
      binary: string;
      accel: Pick<AccelVerdict, "accel" | "kvmCpu">;
      /** Start QEMU through this launcher: all its memory mergeable by KSM (`mergeAllMemoryPrefix()`). */
      mergeAllMemory?: readonly string[];
    },
  ) {
    this.identity = binaryIdentity(options.binary);
    this.launchPrefix = options.mergeAllMemory ?? [];
  }

  async start(spec: MachineSpec, files: MachineFiles, options: StartOptions = {}): Promise<Machine> {
    const started = await startQemu(qemuSpecOf(spec, files, this.options.accel), {
      binary: this.options.binary,
      logFile: files.log,
      qmpTranscript: files.transcript,
      timeoutMs: options.timeoutMs,
      gid: options.gid,
      argvPrefix: [...this.launchPrefix, ...(options.argvPrefix ?? [])],
    });
    return new QemuMachine(started.process, started.qmp, files, "up");
  }

  /** A QEMU that runs but whose QMP does not answer is killed: a machine nothing controls is worse than none. */
  async reattach(recorded: RecordedMachine): Promise<Machine | undefined> {
    const process = QemuProcess.attach(recorded.pid, recorded.startTime);
    if (!process) return undefined;
    try {
      const qmp = await QmpClient.connect(recorded.files.control, { transcript: recorded.files.transcript, timeoutMs: 5000 });
      return new QemuMachine(process, qmp, recorded.files, "unknown");
    } catch {
      process.kill("SIGKILL");
      await process.exited;
      return undefined;
    }
  }

  processesUnder(dir: string): number[] {
    const prefix = dir.endsWith("/") ? dir : `${dir}/`;
    return findProcessesWithArgument(prefix)
      .filter((found) => found.args[0]?.includes("qemu"))
      .map((found) => found.pid);
  }

  killOrphan(pid: number): void {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone already
    }
  }
}

function binaryIdentity(binary: string): string {
  const path = binary.includes("/") ? binary : findProgram(binary);
  if (!path) return binary;
  try {
    const info = statSync(path);
    return `${path}:${info.size}:${info.mtimeMs}`;
  } catch {
    return path;
  }
}
