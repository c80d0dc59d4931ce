// The VM state vocabularies as wire schemas, so the OpenAPI documents list their values: the daemon's states
// (the lifecycle of vm-lifecycle.ts) and the controller's, which adds its own verdicts around them. Enumerated
// here because vm-lifecycle.ts declares the states as a type; the check below fails to compile when the two
// lists drift apart.
import type { Static } from "@sinclair/typebox";
import { StringEnum } from "./slicer.ts";
import type { VmState } from "./vm-lifecycle.ts";

export const VM_STATES = ["creating", "booting", "running", "paused", "suspending", "suspended", "stopping", "stopped", "failed"] as const satisfies readonly VmState[];

/** Compiles only while VM_STATES names every VmState (a state added to the lifecycle must be added here). */
const EVERY_VM_STATE: Exclude<VmState, (typeof VM_STATES)[number]> extends never ? true : never = true;
void EVERY_VM_STATE;

export const VmStateSchema = StringEnum(VM_STATES, { description: "the daemon's VM lifecycle state" });

/**
 * A VM as the controller knows it: `pending` (placed, not yet created on its host), the daemon's states as
 * last seen, `error` (its host refused or failed the create), `lost` (its host no longer has it), `deleting`.
 */
export const FLEET_VM_STATES = ["pending", ...VM_STATES, "error", "lost", "deleting"] as const;
export const FleetVmStateSchema = StringEnum(FLEET_VM_STATES, {
  description:
    "the host's state as last seen (creating … failed), or the controller's own: pending (placed, not yet created), error (the create failed), lost (its host no longer has it), deleting",
});
export type FleetVmState = Static<typeof FleetVmStateSchema>;

export function isFleetVmState(value: string): value is FleetVmState {
  return (FLEET_VM_STATES as readonly string[]).includes(value);
}
