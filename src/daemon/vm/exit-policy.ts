// What happens to a VM whose QEMU process is gone, whether it exited under this daemon or while no daemon
// was running: a sandbox goes with its disk; a persistent VM or a service stops and keeps its disk. A QEMU
// that crashed or was killed from outside leaves its VM failed, with the reason, whatever its kind.
import { rm } from "node:fs/promises";
import type { MachineExit } from "../../engine/index.ts";
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
  await rm(paths.machine.control, { force: true });
  await rm(paths.agentSocket, { force: true });
  store.transition(record, "stopped", { pid: null, pidStartTime: null });
  return "stopped";
}

/**
 * Why the machine died, when it crashed (a signal the daemon did not send, see ExitCause); undefined for an
 * exit the VM's policy covers (the guest powered off, the daemon stopped or killed it).
 */
export function describeCrash(info: Pick<MachineExit, "signal" | "cause">): string | undefined {
  if (info.cause !== "crashed" || info.signal === null) return undefined;
  switch (info.signal) {
    case "SIGBUS":
      return "QEMU was killed by SIGBUS: a page of the VM's memory could not be backed (the filesystem holding its RAM file is probably full)";
    case "SIGKILL":
      return "QEMU was killed by SIGKILL from outside the daemon (the kernel's out-of-memory killer, or an operator)";
    case "SIGTERM":
    case "SIGINT":
    case "SIGHUP":
      return `QEMU was stopped by ${info.signal} from outside the daemon`;
    default:
      return `QEMU crashed (${info.signal}): see qemu.log in the VM's folder`;
  }
}

/** Records a VM whose QEMU crashed as failed, keeping its record and folder (logs, disk) for a look. */
export function failExitedVm(store: VmStore, record: VmRecord, reason: string): VmRecord {
  return store.transition(record, "failed", { pid: null, pidStartTime: null, lastError: reason });
}
