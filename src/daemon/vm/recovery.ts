// Start-up recovery after the previous daemon stopped, gracefully or with kill -9: re-attach to QEMU
// processes that are still running, settle VMs whose process is gone, and remove the debris of half-done
// operations (half-created VMs and VMs whose create was never answered, orphan QEMU processes, folders
// without a record).
import { existsSync } from "node:fs";
import { readdir, readlink, rm } from "node:fs/promises";
import { join } from "node:path";
import { findProcessesWithArgument, QemuProcess, QmpClient } from "../../engine/index.ts";
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

async function reattach(stateDir: string, record: VmRecord): Promise<VmRuntime | undefined> {
  if (record.pid === null || record.pidStartTime === null) return undefined;
  const process = QemuProcess.attach(record.pid, record.pidStartTime);
  if (!process) return undefined;
  const paths = vmPaths(stateDir, record.hostname);
  try {
    const qmp = await QmpClient.connect(paths.qmpSocket, { transcript: paths.qmpTranscript, timeoutMs: 5000 });
    const status = await qmp.queryStatus();
    const runtime = new VmRuntime(record.hostname, record.incarnation, process, qmp, paths.agentSocket);
    // Events sent while no daemon listened are lost; QEMU still knows why it stopped the vCPUs.
    if (status.status === "io-error") runtime.condition.fromRunState(status, await qmp.queryBlock());
    return runtime;
  } catch {
    // A QEMU we cannot control is worse than none: stop it and treat the VM as exited.
    process.kill("SIGKILL");
    await process.exited;
    return undefined;
  }
}

export async function recoverVms(stateDir: string, store: VmStore, log: Logger): Promise<Recovered[]> {
  const recovered: Recovered[] = [];
  const keepPids = new Set<number>();
  for (const record of store.list()) {
    if (record.state === "creating" || !record.acknowledged) {
      // Interrupted mid-create, or made but never answered to its client (the daemon died first): no one
      // knows of this VM, so whatever it started goes (its QEMU, and with it any forwarded ports).
      if (record.pid !== null && record.pidStartTime !== null) {
        const process = QemuProcess.attach(record.pid, record.pidStartTime);
        process?.kill("SIGKILL");
        await process?.exited;
      }
      await removeVmFolder(stateDir, record.hostname);
      store.delete(record.hostname, record.incarnation);
      log.warn({ vm: record.hostname, state: record.state }, record.state === "creating" ? "Removed a VM whose creation was interrupted" : "Removed a VM whose create was never answered");
      continue;
    }
    if (!isLive(record.state)) {
      // A stopped sandbox that is not persistent should not exist; a suspended one waits for its restore, a
      // failed one (QEMU crashed) stays to say why until it is deleted.
      if (record.kind === "sandbox" && !record.persistent && record.state !== "suspended" && record.state !== "failed") await settleExitedVm(stateDir, store, { ...record });
      continue;
    }
    const runtime = await reattach(stateDir, record);
    if (runtime) {
      keepPids.add(runtime.process.pid);
      recovered.push({ record, runtime });
      log.info({ vm: record.hostname, pid: runtime.process.pid }, "Re-attached to a running VM");
    } else {
      const outcome = await settleExitedVm(stateDir, store, record);
      log.warn({ vm: record.hostname, outcome }, "VM stopped while the daemon was down");
    }
  }

  const ours = `${vmsDir(stateDir)}/`;
  for (const orphan of findProcessesWithArgument(ours)) {
    if (keepPids.has(orphan.pid) || !orphan.args[0]?.includes("qemu")) continue;
    try {
      process.kill(orphan.pid, "SIGKILL");
      log.warn({ pid: orphan.pid }, "Killed an orphan QEMU process of this state directory");
    } catch {
      // gone already
    }
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
