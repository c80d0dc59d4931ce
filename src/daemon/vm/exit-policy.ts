// What happens to a VM whose QEMU process is gone, whether it exited under this daemon or while no daemon
// was running: a sandbox goes with its disk; a persistent VM or a service stops and keeps its disk.
import { rm } from "node:fs/promises";
import { removeVmFolder, vmPaths } from "./vm-paths.ts";
import type { VmRecord, VmStore } from "./vm-store.ts";

export type ExitOutcome = "removed" | "stopped";

export async function settleExitedVm(stateDir: string, store: VmStore, record: VmRecord): Promise<ExitOutcome> {
  const paths = vmPaths(stateDir, record.hostname);
  if (record.kind === "sandbox" && !record.persistent) {
    await removeVmFolder(stateDir, record.hostname);
    store.delete(record.hostname, record.incarnation);
    return "removed";
  }
  if (!record.persistent) await rm(paths.disk, { force: true });
  await rm(paths.qmpSocket, { force: true });
  await rm(paths.agentSocket, { force: true });
  store.transition(record, "stopped", { pid: null, pidStartTime: null });
  return "stopped";
}
