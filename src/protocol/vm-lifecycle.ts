// The VM lifecycle (a VM's state as the daemon keeps it and says it on its wire): a closed set of states and
// the transitions allowed between them. Only the daemon store's `transition` writes a state, and only along
// this table.
import { CorralError } from "./errors.ts";

export type VmState = "creating" | "booting" | "running" | "paused" | "suspending" | "suspended" | "stopping" | "stopped" | "failed";

const NEXT: Record<VmState, readonly VmState[]> = {
  creating: ["booting", "failed"],
  booting: ["running", "stopping", "stopped", "failed"],
  // running -> booting: a reboot (the same QEMU resets the machine).
  running: ["paused", "suspending", "stopping", "stopped", "failed", "booting"],
  paused: ["running", "suspending", "stopping", "stopped", "failed"],
  // A suspend that fails leaves the VM as it was.
  suspending: ["suspended", "running", "paused", "failed"],
  // suspended -> booting: a restore (QEMU starts from the saved state, then the agent reconnects).
  suspended: ["booting", "failed"],
  stopping: ["stopped", "failed"],
  stopped: ["booting"],
  failed: ["booting"],
};

export function canTransition(from: VmState, to: VmState): boolean {
  return NEXT[from].includes(to);
}

export function assertTransition(hostname: string, from: VmState, to: VmState): void {
  if (!canTransition(from, to)) {
    throw new CorralError("conflict", `Cannot move VM "${hostname}" from ${from} to ${to}`);
  }
}

/** States in which a QEMU process exists for the VM. */
export const LIVE_STATES: readonly VmState[] = ["booting", "running", "paused", "suspending", "stopping"];

export function isLive(state: VmState): boolean {
  return LIVE_STATES.includes(state);
}

/** Slicer's node `status`: Running, Paused or Stopped. */
export function slicerStatus(state: VmState): "Running" | "Paused" | "Stopped" {
  if (state === "paused") return "Paused";
  if (state === "creating" || state === "booting" || state === "running" || state === "suspending" || state === "stopping") return "Running";
  return "Stopped";
}
