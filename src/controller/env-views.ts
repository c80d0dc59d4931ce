// Environments and their VMs as the TTstack routes show them: TTstack's Env, EnvDetail and Vm (its states,
// Unix seconds, `ip` and `env_id` never null), Corral's fields beside them (`status`, `host_addr`, `error`, …).
import type { Env, EnvDetail, FleetVm } from "../protocol/controller.ts";
import { ttEnvState, ttVmState, unixSeconds, type TtEngine } from "../protocol/ttstack.ts";
import type { EnvRecord, FleetVmRecord, HostRecord } from "./db/index.ts";
import type { ReportedVm } from "./host-report.ts";

/** The host part of a daemon's address, where a VM's mapped ports are reached. */
export function hostOfAddr(addr: string): string {
  const url = new URL(`http://${addr}`);
  return url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
}

/** The health a host reported for one of its VMs, in the controller's views. */
export function reportedHealth(reported: Pick<ReportedVm, "health" | "health_detail"> | undefined): Pick<FleetVm, "health" | "health_detail"> {
  if (reported?.health === undefined) return {};
  return reported.health_detail === undefined ? { health: reported.health } : { health: reported.health, health_detail: reported.health_detail };
}

/** `host.vms`, when given, is the host's last report: the VM's health comes from there. */
export function fleetVmView(vm: FleetVmRecord, host: (Pick<HostRecord, "addr"> & Partial<Pick<HostRecord, "vms">>) | undefined): FleetVm {
  return {
    id: vm.id,
    env_id: vm.envId,
    host_id: vm.hostId,
    image: vm.image,
    // Engines are checked on create (Corral's hosts run qemu; a TTstack agent reports its own).
    engine: vm.engine as TtEngine,
    cpu: vm.cpu,
    mem: vm.mem,
    disk: vm.disk,
    ip: vm.ip ?? "",
    port_map: vm.portMap,
    state: ttVmState(vm.state),
    created_at: unixSeconds(vm.createdAt),
    status: vm.state,
    host_addr: host ? hostOfAddr(host.addr) : "",
    ports: vm.ports,
    deny_outgoing: vm.denyOutgoing,
    error: vm.error,
    ...reportedHealth(host?.vms?.find((reported) => reported.id === vm.id)),
  };
}

/** TTstack's Env: the VMs by id only. */
export function envView(env: EnvRecord): Env {
  return {
    id: env.id,
    owner: env.owner,
    vm_ids: env.vms.map((vm) => vm.id),
    created_at: unixSeconds(env.createdAt),
    expires_at: unixSeconds(env.expiresAt),
    state: ttEnvState(env.state),
    status: env.state,
    lifetime: env.lifetime,
    ssh_keys: env.sshKeys,
  };
}

/** TTstack's EnvDetail: the environment, its VMs, and a warning per VM that failed (left out when none did). */
export function envDetailView(env: EnvRecord, hosts: ReadonlyMap<string, Pick<HostRecord, "addr"> & Partial<Pick<HostRecord, "vms">>>): EnvDetail {
  const warnings = env.vms.filter((vm) => vm.error !== null).map((vm) => `VM ${vm.id} on host ${vm.hostId}: ${vm.error}`);
  return {
    env: envView(env),
    vms: env.vms.map((vm) => fleetVmView(vm, hosts.get(vm.hostId))),
    ...(warnings.length > 0 ? { warnings } : {}),
  };
}
