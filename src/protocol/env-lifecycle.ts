// The environment lifecycle (an environment's state as the controller keeps it and says it as `status` on its
// wire): a closed set of states, the transitions allowed between them, and the states in which an operation
// is under way. The fleet store writes an environment's state only along this table (claimEnvOperation,
// finishEnvOperation, setEnvState), in the same compare-and-set that takes or ends the operation.
import type { Static } from "@sinclair/typebox";
import { CorralError, quote } from "./errors.ts";
import { StringEnum } from "./slicer.ts";

export const ENV_STATES = ["creating", "running", "partial", "failed", "stopping", "stopped", "starting", "deleting"] as const;

/**
 * Corral's environment states: `running`: every VM runs; `partial`: some VMs failed (see each VM's `error`);
 * `failed`: none could be created; `stopped`; `deleting`: being destroyed (expired or asked), until every
 * host confirmed; and the operations under way (`creating`, `stopping`, `starting`).
 */
export const EnvStateSchema = StringEnum(ENV_STATES, {
  description: "creating, stopping, starting: under way; running; partial: some VMs failed; failed: none could be created; stopped; deleting: until every host confirmed",
});
export type EnvState = Static<typeof EnvStateSchema>;

/** The states each state may move to. A move to the same state is a retry of an operation whose controller died. */
const NEXT: Record<EnvState, readonly EnvState[]> = {
  // A create ends by how many VMs were made; a stop or start asked while a dead controller's create is
  // unfinished first finishes it (envs.ts), then moves straight on.
  creating: ["running", "partial", "failed", "stopping", "starting", "deleting"],
  running: ["stopping", "starting", "deleting"],
  partial: ["stopping", "starting", "deleting"],
  failed: ["stopping", "starting", "deleting"],
  stopped: ["stopping", "starting", "deleting"],
  stopping: ["stopped", "partial", "stopping", "starting", "deleting"],
  starting: ["running", "partial", "starting", "stopping", "deleting"],
  // A delete is never undone: it goes on until the environment is forgotten (a row deleted, not a state).
  deleting: ["deleting"],
};

export function canMoveEnv(from: EnvState, to: EnvState): boolean {
  return NEXT[from].includes(to);
}

/** The states from which `to` may be reached: what the store's compare-and-set accepts for a move to `to`. */
export function envStatesLeadingTo(to: EnvState): EnvState[] {
  return ENV_STATES.filter((from) => canMoveEnv(from, to));
}

export function assertEnvMove(id: string, from: EnvState, to: EnvState): void {
  if (!canMoveEnv(from, to)) throw new CorralError("conflict", `Cannot move environment ${quote(id)} from ${from} to ${to}`);
}

/** States in which an operation is under way: what a controller's death can leave behind (recovery takes them over). */
export const IN_FLIGHT_STATES = ["creating", "stopping", "starting", "deleting"] as const satisfies readonly EnvState[];

export function isInFlight(state: EnvState): boolean {
  return (IN_FLIGHT_STATES as readonly EnvState[]).includes(state);
}
