// Environments and their VMs as the API shows them (TTstack's fields, Corral's beside them).
import type { Env, FleetVm } from "../protocol/controller.ts";
import type { AgentVm } from "../protocol/ttstack-agent.ts";
import type { EnvRecord, FleetVmRecord, HostRecord } from "./db/index.ts";

/** The host part of a daemon's address, where a VM's mapped ports are reached. */
export function hostOfAddr(addr: string): string {
  const url = new URL(`http://${addr}`);
  return url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
}

/** The health a host reported for one of its VMs (TTstack's VM entry), in the controller's views. */
export function reportedHealth(reported: Pick<AgentVm, "health" | "health_detail"> | undefined): Pick<FleetVm, "health" | "health_detail"> {
  if (reported?.health === undefined) return {};
  return reported.health_detail === undefined ? { health: reported.health } : { health: reported.health, health_detail: reported.health_detail };
}

/** `host.vms`, when given, is the host's last report: the VM's health comes from there. */
export function fleetVmView(vm: FleetVmRecord, host: (Pick<HostRecord, "addr"> & Partial<Pick<HostRecord, "vms">>) | undefined): FleetVm {
  return {
    id: vm.id,
    env_id: vm.envId,
    host_id: vm.hostId,
    host_addr: host ? hostOfAddr(host.addr) : "",
    image: vm.image,
    engine: vm.engine,
    cpu: vm.cpu,
    mem: vm.mem,
    disk: vm.disk,
    ports: vm.ports,
    port_map: vm.portMap,
    deny_outgoing: vm.denyOutgoing,
    state: vm.state,
    ip: vm.ip,
    error: vm.error,
    created_at: vm.createdAt,
    ...reportedHealth(host?.vms?.find((reported) => reported.id === vm.id)),
  };
}

export function envView(env: EnvRecord, hosts: ReadonlyMap<string, Pick<HostRecord, "addr"> & Partial<Pick<HostRecord, "vms">>>): Env {
  return {
    id: env.id,
    owner: env.owner,
    ssh_keys: env.sshKeys,
    lifetime: env.lifetime,
    state: env.state,
    created_at: env.createdAt,
    expires_at: env.expiresAt,
    vms: env.vms.map((vm) => fleetVmView(vm, hosts.get(vm.hostId))),
  };
}
