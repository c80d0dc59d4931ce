// Start-up recovery after the previous daemon stopped, gracefully or with kill -9: re-attach to machines
// that are still running, settle VMs whose process is gone, and remove the debris of half-done operations
// (half-created VMs and VMs whose create was never answered, orphan machine processes, folders without a
// record).
import { existsSync } from "node:fs";
import { readdir, readlink, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Engine, RecordedMachine } from "../../engine/index.ts";
import { isHostname } from "../../protocol/names.ts";
import type { Logger } from "../../util/log.ts";
import { settleExitedVm } from "./exit-policy.ts";
import { POOL_FOLDER_PATTERN, removeVmFolder, vmPaths, vmsDir } from "./vm-paths.ts";
import { VmRuntime } from "./vm-runtime.ts";
import { isLive } from "../../protocol/vm-lifecycle.ts";
import type { VmRecord, VmStore } from "./vm-store.ts";

export interface Recovered {
  record: VmRecord;
  runtime: VmRuntime;
}

/** The machine a record names, as an engine finds it again; undefined when the record names none. */
function recordedMachine(stateDir: string, record: VmRecord): RecordedMachine | undefined {
  if (record.pid === null || record.pidStartTime === null) return undefined;
  return { pid: record.pid, startTime: record.pidStartTime, files: vmPaths(stateDir, record.hostname).machine };
}

async function reattach(engine: Engine, stateDir: string, record: VmRecord): Promise<VmRuntime | undefined> {
  const recorded = recordedMachine(stateDir, record);
  // The engine kills a machine that runs but does not answer: one we cannot control is worse than none.
  const machine = recorded && (await engine.reattach(recorded));
  if (!machine) return undefined;
  try {
    const status = await machine.runState();
    const runtime = new VmRuntime(record.hostname, record.incarnation, machine, vmPaths(stateDir, record.hostname).agentSocket);
    // Events sent while no daemon listened are lost; the engine still knows why it stopped the vCPUs.
    runtime.condition.fromRunState(status);
    return runtime;
  } catch {
    await machine.kill();
    machine.dispose();
    return undefined;
  }
}

export async function recoverVms(engine: Engine, stateDir: string, store: VmStore, log: Logger): Promise<Recovered[]> {
  const recovered: Recovered[] = [];
  const keepPids = new Set<number>();
  for (const record of store.list()) {
    if (record.state === "creating" || !record.acknowledged) {
      // Interrupted mid-create, or made but never answered to its client (the daemon died first): no one
      // knows of this VM, so whatever it started goes (its machine, and with it any forwarded ports).
      const recorded = recordedMachine(stateDir, record);
      const machine = recorded && (await engine.reattach(recorded));
      if (machine) {
        await machine.kill();
        machine.dispose();
      }
      await removeVmFolder(stateDir, record.hostname);
      store.delete(record.hostname, record.incarnation);
      log.warn(
        { vm: record.hostname, state: record.state },
        record.state === "creating" ? "Removed a VM whose creation was interrupted" : "Removed a VM whose create was never answered",
      );
      continue;
    }
    if (!isLive(record.state)) {
      // A stopped sandbox that is not persistent should not exist; a suspended one waits for its restore, a
      // failed one (QEMU crashed) stays to say why until it is deleted.
      if (record.kind === "sandbox" && !record.persistent && record.state !== "suspended" && record.state !== "failed") await settleExitedVm(stateDir, store, { ...record });
      continue;
    }
    const runtime = await reattach(engine, stateDir, record);
    if (runtime) {
      keepPids.add(runtime.machine.pid);
      recovered.push({ record, runtime });
      log.info({ vm: record.hostname, pid: runtime.machine.pid }, "Re-attached to a running VM");
    } else {
      const outcome = await settleExitedVm(stateDir, store, record);
      log.warn({ vm: record.hostname, outcome }, "VM stopped while the daemon was down");
    }
  }

  for (const pid of engine.processesUnder(vmsDir(stateDir))) {
    if (keepPids.has(pid)) continue;
    engine.killOrphan(pid);
    log.warn({ pid, engine: engine.name }, "Killed an orphan machine process of this state directory");
  }

  if (existsSync(vmsDir(stateDir))) {
    for (const name of await readdir(vmsDir(stateDir))) {
      if (isHostname(name) && store.get(name)) continue;
      // The link a taken warm-pool clone left in its pool folder's place: kept while its VM exists.
      if (POOL_FOLDER_PATTERN.test(name)) {
        const target = await readlink(join(vmsDir(stateDir), name)).catch(() => "");
        if (isHostname(target) && store.get(target)) continue;
      }
      await rm(join(vmsDir(stateDir), name), { recursive: true, force: true });
      log.warn({ dir: name }, "Removed a VM folder that had no record");
    }
  }
  return recovered;
}
