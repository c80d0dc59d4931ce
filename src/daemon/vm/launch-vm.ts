// Starting QEMU for one VM record: folder, overlay disk, QEMU with its QMP connection, and the record moved
// to "booting" with the new process and a fresh incarnation. Each step registers its undo beside it; a failure
// part-way leaves nothing behind (for a brand-new VM, not even its record).
import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { kernelCmdline, loadVmState, startQemu, type AccelVerdict, type QemuSpec } from "../../engine/index.ts";
import { createOverlay, type ImageStore } from "../../image/index.ts";
import { userNetwork } from "../../net/user-network.ts";
import type { Logger } from "../../util/log.ts";
import { Reverter } from "../../util/reverter.ts";
import { vmPaths, type VmPaths } from "./vm-paths.ts";
import { VmRuntime } from "./vm-runtime.ts";
import type { VmRecord, VmStore } from "./vm-store.ts";

const MiB = 1024 * 1024;

export interface LaunchDeps {
  stateDir: string;
  /** The guest's TSC rate under TCG (see hostTscKhz). */
  tscKhz: number;
  store: VmStore;
  images: ImageStore;
  accel: AccelVerdict;
  qemuBinary: string;
  log: Logger;
}

/** The QEMU spec for a record; pure apart from the paths it names. */
export function qemuSpecFor(record: VmRecord, paths: VmPaths, image: { kernel: string; initrd: string }, accel: AccelVerdict, tscKhz: number): QemuSpec {
  const network = userNetwork(record.mac);
  return {
    accel: accel.accel,
    kvmCpu: accel.kvmCpu,
    cpus: record.cpus,
    memoryMiB: Math.ceil(record.ramBytes / MiB),
    kernel: image.kernel,
    initrd: image.initrd,
    cmdline: kernelCmdline({ accel: accel.accel, hostname: record.hostname, network, tscKhz }),
    disk: { path: paths.disk, format: "qcow2" },
    serialLog: paths.serialLog,
    qmpSocket: paths.qmpSocket,
    agentSocket: paths.agentSocket,
    pidFile: paths.pidFile,
    network,
  };
}

export interface LaunchOptions {
  /** Restore: start from this saved state (see saveVmState) instead of booting. */
  restoreFrom?: string;
}

/**
 * Launches a record in state creating, stopped, failed or suspended; the caller holds the VM's lock.
 * Resolves with the record in state "booting" and the runtime of its new QEMU process (for a restore, the
 * guest runs on from where it was saved; its agent still has to reconnect).
 */
export async function launchVm(deps: LaunchDeps, record: VmRecord, options: LaunchOptions = {}): Promise<{ record: VmRecord; runtime: VmRuntime }> {
  const paths = vmPaths(deps.stateDir, record.hostname);
  const revert = new Reverter((what, err) => deps.log.warn({ vm: record.hostname, err }, `Cannot undo ${what}`));
  if (record.state === "creating") {
    revert.add("the VM record", () => void deps.store.delete(record.hostname, record.incarnation));
    revert.add("the VM folder", () => rm(paths.dir, { recursive: true, force: true }));
  }
  try {
    await mkdir(paths.dir, { recursive: true, mode: 0o700 });
    const image = await deps.images.load(record.image, record.imageVersion);
    if (!existsSync(paths.disk)) {
      await createOverlay(image, paths.disk);
      revert.add("the overlay disk", () => rm(paths.disk, { force: true }));
    }
    await rm(paths.qmpSocket, { force: true });
    await rm(paths.agentSocket, { force: true });
    const spec = { ...qemuSpecFor(record, paths, image, deps.accel, deps.tscKhz), incoming: options.restoreFrom !== undefined };
    const started = await startQemu(spec, { binary: deps.qemuBinary, logFile: paths.qemuLog, qmpTranscript: paths.qmpTranscript });
    revert.add("the QEMU process", async () => {
      started.process.kill();
      started.qmp.close();
      await started.process.exited;
    });
    if (options.restoreFrom !== undefined) {
      await loadVmState(started.qmp, options.restoreFrom, paths.migrationSocket);
      await started.qmp.cont();
    }
    const booting = deps.store.transition(record, "booting", {
      pid: started.process.pid,
      pidStartTime: started.process.startTime,
      incarnation: deps.store.nextIncarnation(),
      lastError: null,
    });
    revert.commit();
    deps.log.info({ vm: booting.hostname, pid: started.process.pid, accel: spec.accel, cpus: spec.cpus, ram_mib: spec.memoryMiB }, "VM started");
    return { record: booting, runtime: new VmRuntime(booting.hostname, booting.incarnation, started.process, started.qmp, paths.agentSocket) };
  } catch (err) {
    await revert.revert();
    throw err;
  }
}
