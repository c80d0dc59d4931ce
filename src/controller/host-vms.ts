// How the controller's VM records relate to what a host reports of its VMs: whether the host's VM named like
// a record is the VM that record describes, and which record fields a host's answer sets. A VM's id is its
// name on its host, so a create repeated after a crash meets the VM the first one made: it is adopted only
// when it is that VM (same fleet, environment and spec), never a stranger that happens to have the name.
import type { FleetVmRecord, VmPatch } from "./db/index.ts";
import type { ReportedVm } from "./host-report.ts";

/** The port every VM made through the agent API forwards, asked for or not (the host adds it). */
const ALWAYS_FORWARDED = 22;

/** The VM fields a host's answer about the VM sets. */
export function fromHost(answer: ReportedVm): Required<Pick<VmPatch, "state" | "portMap" | "ip" | "error">> {
  return { state: answer.state, portMap: answer.port_map, ip: answer.ip, error: answer.last_error };
}

/**
 * Whether the host's VM is provably one this fleet made: the host kept the fleet's id with it (Corral daemons
 * do; a TTstack agent keeps nothing of the kind, so its VMs are never provably the fleet's).
 */
export function madeByFleet(there: ReportedVm, fleetId: string): boolean {
  return typeof there.fleet_id === "string" && there.fleet_id === fleetId;
}

/**
 * Why the host's VM `there` is not the VM `vm` describes (another fleet's, another environment's, or made
 * with another spec), or undefined when it is. The disk is left out: the host reports the image's size when
 * it is larger. What the host does not say (a TTstack agent's outgoing policy, its fleet) is not held against it.
 */
export function differenceFrom(vm: Pick<FleetVmRecord, "envId" | "image" | "cpu" | "mem" | "ports" | "denyOutgoing">, there: ReportedVm, fleetId: string): string | undefined {
  if (typeof there.fleet_id === "string" && there.fleet_id !== fleetId) return "it was made by another fleet controller";
  if (there.env_id !== vm.envId) {
    return there.env_id === null ? "it was not made for an environment" : `it belongs to environment ${JSON.stringify(there.env_id)}`;
  }
  if (there.image !== vm.image) return `its image is ${JSON.stringify(there.image)}, not ${JSON.stringify(vm.image)}`;
  if (there.cpu !== vm.cpu) return `it has ${there.cpu} vCPUs, not ${vm.cpu}`;
  if (there.mem !== vm.mem) return `it has ${there.mem} MiB of memory, not ${vm.mem}`;
  if (there.deny_outgoing !== undefined && there.deny_outgoing !== vm.denyOutgoing) return `its outgoing traffic is ${there.deny_outgoing ? "denied" : "allowed"}`;
  const ports = (list: readonly number[]) => [...new Set(list.filter((p) => p !== ALWAYS_FORWARDED))].sort((x, y) => x - y).join(",");
  if (ports(there.ports) !== ports(vm.ports)) return `it forwards ports [${ports(there.ports)}], not [${ports(vm.ports)}]`;
  return undefined;
}
