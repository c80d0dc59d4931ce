// Starting QEMU for one VM record: folder, overlay disk, QEMU with its QMP connection, and the record moved
// to "booting" with the new process and a fresh incarnation. Each step registers its undo beside it; a failure
// part-way leaves nothing behind (for a brand-new VM, not even its record).
import { existsSync } from "node:fs";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { kernelCmdline, loadVmState, startQemu, type AccelVerdict, type QemuSpec } from "../../engine/index.ts";
import { createOverlay, createOverlayOn, type ImageStore } from "../../image/index.ts";
import { userNetwork } from "../../net/user-network.ts";
import type { Logger } from "../../util/log.ts";
import { Reverter } from "../../util/reverter.ts";
import { templatePaths, type TemplatePaths } from "../templates/template-paths.ts";
import { AgentClient } from "../agent/agent-client.ts";
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

/** What a QEMU spec needs to know about a machine (a VM record, or a template being made). */
export type MachineShape = Pick<VmRecord, "hostname" | "mac" | "cpus" | "ramBytes">;

/** The QEMU spec for a machine; pure apart from the paths it names. */
export function qemuSpecFor(
  record: MachineShape,
  paths: Pick<VmPaths, "disk" | "serialLog" | "qmpSocket" | "agentSocket" | "pidFile">,
  image: { kernel: string; initrd: string },
  accel: AccelVerdict,
  tscKhz: number,
): QemuSpec {
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
  /**
   * Create the VM as a clone of this template instead of booting it. A failed clone leaves the record as
   * it was (still "creating"), so the caller can boot it cold instead.
   */
  clone?: TemplatePaths & { id: string };
}

/** How long a clone's agent may take to answer after the restore before the clone counts as failed. */
const CLONE_AGENT_DEADLINE_MS = 30_000;

/**
 * Launches a record in state creating, stopped, failed or suspended; the caller holds the VM's lock.
 * Resolves with the record in state "booting" and the runtime of its new QEMU process (for a restore, the
 * guest runs on from where it was saved; its agent still has to reconnect).
 */
export async function launchVm(deps: LaunchDeps, record: VmRecord, options: LaunchOptions = {}): Promise<{ record: VmRecord; runtime: VmRuntime }> {
  const paths = vmPaths(deps.stateDir, record.hostname);
  const revert = new Reverter((what, err) => deps.log.warn({ vm: record.hostname, err }, `Cannot undo ${what}`));
  const clone = options.clone;
  if (clone) {
    revert.add("the clone's files", () => rm(paths.dir, { recursive: true, force: true }));
  } else if (record.state === "creating") {
    revert.add("the VM record", () => void deps.store.delete(record.hostname, record.incarnation));
    revert.add("the VM folder", () => rm(paths.dir, { recursive: true, force: true }));
  }
  try {
    await mkdir(paths.dir, { recursive: true, mode: 0o700 });
    const image = await deps.images.load(record.image, record.imageVersion);
    if (clone) {
      await createOverlayOn(clone.disk, "qcow2", paths.disk);
      // The clone's console history starts with the boot of the machine it is a copy of.
      await copyFile(clone.serialLog, paths.serialLog).catch(() => undefined);
    } else if (!existsSync(paths.disk)) {
      await createOverlay(image, paths.disk);
      revert.add("the overlay disk", () => rm(paths.disk, { force: true }));
    }
    await rm(paths.qmpSocket, { force: true });
    await rm(paths.agentSocket, { force: true });
    const template = clone?.id ?? record.template;
    const spec: QemuSpec = {
      ...qemuSpecFor(record, paths, image, deps.accel, deps.tscKhz),
      incoming: options.restoreFrom !== undefined || clone !== undefined,
      // A clone keeps its template's RAM file as its memory backend for life: a suspended clone's saved
      // state names that RAM block, and its disk is backed by the template's anyway.
      ...(template ? { memoryFile: { path: templatePaths(deps.stateDir, template).ram, shared: false } } : {}),
    };
    const started = await startQemu(spec, { binary: deps.qemuBinary, logFile: paths.qemuLog, qmpTranscript: paths.qmpTranscript });
    revert.add("the QEMU process", async () => {
      started.process.kill();
      started.qmp.close();
      await started.process.exited;
    });
    let agent: AgentClient | string = paths.agentSocket;
    if (clone) {
      await started.qmp.migrateSetCapabilities([{ capability: "x-ignore-shared", state: true }]);
      await loadVmState(started.qmp, clone.state, paths.migrationSocket);
      await started.qmp.cont();
      // A clone whose agent does not answer (a damaged template) must fail here, while the caller can
      // still boot the VM cold: after this, a silent agent would only end the VM.
      const connected = new AgentClient(paths.agentSocket);
      revert.add("the agent connection", () => connected.close());
      await connected.waitForConnection(AbortSignal.timeout(CLONE_AGENT_DEADLINE_MS), () => started.process.running);
      agent = connected;
    } else if (options.restoreFrom !== undefined) {
      await loadVmState(started.qmp, options.restoreFrom, paths.migrationSocket);
      await started.qmp.cont();
    }
    const booting = deps.store.transition(record, "booting", {
      pid: started.process.pid,
      pidStartTime: started.process.startTime,
      incarnation: deps.store.nextIncarnation(),
      lastError: null,
      ...(clone ? { template: clone.id } : {}),
    });
    revert.commit();
    deps.log.info(
      { vm: booting.hostname, pid: started.process.pid, accel: spec.accel, cpus: spec.cpus, ram_mib: spec.memoryMiB, ...(clone ? { template: clone.id } : {}) },
      clone ? "VM cloned from its template" : "VM started",
    );
    const runtime = new VmRuntime(booting.hostname, booting.incarnation, started.process, started.qmp, agent);
    runtime.fresh = record.state === "creating";
    return { record: booting, runtime };
  } catch (err) {
    await revert.revert();
    throw err;
  }
}
