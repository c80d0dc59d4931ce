// What to do with each VM of an environment whose create was interrupted (its controller died before it
// was done), or that is being deleted, decided from the VM's record and what its host answers now; and the
// state a create ends in. Pure functions: the decisions are tested without hosts (test/unit/env-recovery.test.ts).
//
// TTstack answers an accepted create once its VMs exist, so a create the controller accepted is finished if
// it can be: a VM its host already has (made by the dead controller's request) is adopted as it is there; one
// its host lacks is created now; only a VM that cannot be made (its host gone or offline, or the name taken
// by a VM that is not this one) fails, with the reason in its `error`.
import type { EnvState } from "../protocol/env-lifecycle.ts";
import type { FleetVmRecord, FleetVmState, VmPatch } from "./db/index.ts";
import type { ReportedVm } from "./host-report.ts";
import { differenceFrom, fromHost } from "./host-vms.ts";

/** What a host said when asked for an environment's VMs. */
export type HostView =
  | { kind: "answered"; vms: ReadonlyMap<string, ReportedVm> }
  /** It did not answer; `offline` when heartbeats have given up on it too (it will not answer soon). */
  | { kind: "unreachable"; reason: string; offline: boolean }
  /** It is no longer registered with the controller. */
  | { kind: "gone" };

export type CreateStep =
  /** The record stands. */
  | { kind: "keep" }
  /** The record takes what the host says. */
  | { kind: "adopt"; patch: VmPatch }
  /** The host does not have it: create it (idempotently: a host that has it by then answers 409). */
  | { kind: "create" }
  /** It cannot be made: the VM becomes `error` with this reason. */
  | { kind: "fail"; error: string }
  /** Its host did not answer (`reason`) but may soon: ask again on the next round. */
  | { kind: "wait"; reason: string };

/** VM states in which it exists on its host and did not fail there. */
const MADE: ReadonlySet<FleetVmState> = new Set(["creating", "booting", "running", "paused", "suspending", "suspended", "stopping", "stopped"]);

/**
 * What the host's view changes in the record of a VM the controller took for made (any state but `pending`):
 * its state there, or `lost` when the host lacks it; undefined for nothing (the host did not answer, or the
 * record is the controller's own verdict: `error`, `lost`, `deleting`).
 */
export function refreshPatch(vm: FleetVmRecord, view: HostView, fleetId: string): VmPatch | undefined {
  if (view.kind !== "answered" || !MADE.has(vm.state)) return undefined;
  const there = view.vms.get(vm.id);
  if (there === undefined) return { state: "lost", error: `Host ${JSON.stringify(vm.hostId)} no longer has this VM` };
  return differenceFrom(vm, there, fleetId) === undefined ? fromHost(there) : undefined;
}

/** The next step for `vm` of an interrupted create, given its host's view (see the file's opening). */
export function planCreateStep(vm: FleetVmRecord, view: HostView, fleetId: string): CreateStep {
  // The dead controller's create had its answer (or its refusal) stored: it stands, refreshed from the host.
  if (vm.state !== "pending") {
    const patch = refreshPatch(vm, view, fleetId);
    return patch === undefined ? { kind: "keep" } : { kind: "adopt", patch };
  }
  switch (view.kind) {
    case "gone":
      return { kind: "fail", error: `Cannot finish creating it: host ${JSON.stringify(vm.hostId)} is no longer registered` };
    case "unreachable":
      return view.offline
        ? { kind: "fail", error: `Cannot finish creating it: host ${JSON.stringify(vm.hostId)} is offline (${view.reason})` }
        : { kind: "wait", reason: view.reason };
    case "answered": {
      const there = view.vms.get(vm.id);
      if (there === undefined) return { kind: "create" };
      const difference = differenceFrom(vm, there, fleetId);
      if (difference !== undefined)
        return { kind: "fail", error: `Cannot create it: host ${JSON.stringify(vm.hostId)} already has a VM named ${JSON.stringify(vm.id)} that is not this one (${difference})` };
      return { kind: "adopt", patch: fromHost(there) };
    }
  }
}

/**
 * The state a create ends in once each VM was made or failed: `running` when all were made, `failed` when
 * none was (or there is none), `partial` otherwise; undefined while a VM is still `pending` (not settled yet).
 */
export function createOutcome(vms: readonly Pick<FleetVmRecord, "state">[]): EnvState | undefined {
  if (vms.some((vm) => vm.state === "pending")) return undefined;
  const made = vms.filter((vm) => MADE.has(vm.state)).length;
  return made === 0 ? "failed" : made === vms.length ? "running" : "partial";
}

export type DeleteStep =
  /** Delete it on its host, then forget it. */
  | { kind: "delete" }
  /** Forget it: its host does not have it (or is no longer registered), or has a VM of that name that is not this environment's, which is left alone. */
  | { kind: "forget"; stranger: boolean }
  /** Its host did not answer: keep it (`deleting`, with the reason) and try again later. */
  | { kind: "retry"; reason: string };

/**
 * How a VM of an environment being deleted goes. A VM is deleted on its host by name, so the host's VM of
 * that name is deleted only when it is this environment's: a create refused because the name was taken
 * (the VM is `error`) must not cost the VM that took it, nor may another fleet's VM of the same name and
 * environment id (a host shared by two controllers).
 */
export function planDeleteStep(vm: Pick<FleetVmRecord, "id" | "envId">, view: HostView, fleetId: string): DeleteStep {
  if (view.kind === "gone") return { kind: "forget", stranger: false };
  if (view.kind === "unreachable") return { kind: "retry", reason: view.reason };
  const there = view.vms.get(vm.id);
  if (there === undefined) return { kind: "forget", stranger: false };
  const othersFleet = typeof there.fleet_id === "string" && there.fleet_id !== fleetId;
  return there.env_id === vm.envId && !othersFleet ? { kind: "delete" } : { kind: "forget", stranger: true };
}
