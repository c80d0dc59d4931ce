// Conversions between the store's records (records.ts) and the rows of schema.ts: the only place that knows
// both shapes.
import type { Selectable, Updateable } from "kysely";
import type { EnvState, HostState } from "../../protocol/controller.ts";
import { isHostKind, type HostReport, type ReportedVm } from "../host-report.ts";
import type { PlacementHost } from "./placement.ts";
import type { EnvRecord, FleetVmRecord, FleetVmState, HostPatch, HostRecord, NewEnv, NewFleetVm, NewHost, VmPatch } from "./records.ts";
import type { EnvsTable, HostsTable, VmsTable } from "./schema.ts";

/** The columns placement reads, without the (possibly long) list of the host's VMs. */
/** What a placement reads of each host: not its whole report (`info`), only the columns kept from it. */
export const PLACEMENT_COLUMNS = ["id", "kind", "state", "cpu_total", "mem_total", "disk_total", "engines", "images", "reserved_cpu", "reserved_mem", "reserved_disk"] as const;

export type PlacementRow = Pick<Selectable<HostsTable>, (typeof PLACEMENT_COLUMNS)[number]>;

/** The columns kept beside `info` for placement (schema.ts): null while the host has not reported. */
export function capacityColumns(info: HostReport | null): Pick<HostsTable, "cpu_total" | "mem_total" | "disk_total" | "engines" | "images"> {
  if (info === null) return { cpu_total: null, mem_total: null, disk_total: null, engines: null, images: null };
  return { cpu_total: info.cpu_total, mem_total: info.mem_total, disk_total: info.disk_total, engines: JSON.stringify(info.engines), images: JSON.stringify(info.images) };
}

export function placementHostFromRow(row: PlacementRow): PlacementHost & Pick<HostRecord, "kind"> {
  const reported = row.cpu_total !== null && row.mem_total !== null && row.disk_total !== null && row.engines !== null && row.images !== null;
  return {
    id: row.id,
    kind: isHostKind(row.kind) ? row.kind : "corral",
    state: row.state as HostState,
    info: reported
      ? {
          cpu_total: Number(row.cpu_total),
          mem_total: Number(row.mem_total),
          disk_total: Number(row.disk_total),
          engines: JSON.parse(row.engines as string) as string[],
          images: JSON.parse(row.images as string) as string[],
        }
      : null,
    reserved: { cpu: row.reserved_cpu, mem: row.reserved_mem, disk: row.reserved_disk },
  };
}

export function hostFromRow(row: Selectable<HostsTable>): HostRecord {
  return {
    id: row.id,
    kind: isHostKind(row.kind) ? row.kind : "corral",
    state: row.state as HostState,
    info: row.info === null ? null : (JSON.parse(row.info) as HostReport),
    reserved: { cpu: row.reserved_cpu, mem: row.reserved_mem, disk: row.reserved_disk },
    addr: row.addr,
    uri: row.uri,
    token: row.token,
    hostname: row.hostname,
    vms: JSON.parse(row.vms) as ReportedVm[],
    failures: row.failures,
    disconnected: row.disconnected === 1,
    createdAt: row.created_at,
    registeredAt: row.registered_at,
    lastSeenAt: row.last_seen_at,
    lastError: row.last_error,
  };
}

export function hostToRow(host: NewHost, now: string): Selectable<HostsTable> {
  return {
    id: host.id,
    addr: host.addr,
    uri: host.uri,
    token: host.token ?? null,
    kind: host.kind,
    state: host.state,
    hostname: host.hostname,
    info: host.info ? JSON.stringify(host.info) : null,
    ...capacityColumns(host.info ?? null),
    vms: JSON.stringify(host.vms ?? []),
    reserved_cpu: 0,
    reserved_mem: 0,
    reserved_disk: 0,
    failures: 0,
    disconnected: 0,
    created_at: now,
    registered_at: now,
    last_seen_at: host.lastSeenAt ?? null,
    last_error: host.lastError ?? null,
  };
}

/** Only the fields the patch names (kysely leaves out `undefined` values). */
export function hostPatchToRow(patch: HostPatch): Updateable<HostsTable> {
  return {
    state: patch.state,
    hostname: patch.hostname,
    info: patch.info === undefined ? undefined : patch.info === null ? null : JSON.stringify(patch.info),
    ...(patch.info === undefined ? {} : capacityColumns(patch.info)),
    vms: patch.vms === undefined ? undefined : JSON.stringify(patch.vms),
    failures: patch.failures,
    disconnected: patch.disconnected === undefined ? undefined : patch.disconnected ? 1 : 0,
    last_seen_at: patch.lastSeenAt,
    last_error: patch.lastError,
    addr: patch.addr,
    uri: patch.uri,
    token: patch.token,
    kind: patch.kind,
  };
}

export function vmFromRow(row: Selectable<VmsTable>): FleetVmRecord {
  return {
    id: row.id,
    envId: row.env_id,
    hostId: row.host_id,
    image: row.image,
    engine: row.engine,
    cpu: row.cpu,
    mem: row.mem,
    disk: row.disk,
    ports: JSON.parse(row.ports) as number[],
    denyOutgoing: row.deny_outgoing === 1,
    sshKeys: JSON.parse(row.ssh_keys) as string[],
    portMap: JSON.parse(row.port_map) as Record<string, number>,
    state: row.state as FleetVmState,
    ip: row.ip,
    error: row.error,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export function vmToRow(vm: NewFleetVm, placed: { envId: string; position: number; hostId: string }, now: string): Selectable<VmsTable> {
  return {
    id: vm.id,
    env_id: placed.envId,
    position: placed.position,
    host_id: placed.hostId,
    image: vm.image,
    engine: vm.engine,
    cpu: vm.cpu,
    mem: vm.mem,
    disk: vm.disk,
    ports: JSON.stringify(vm.ports),
    ssh_keys: JSON.stringify(vm.sshKeys ?? []),
    // better-sqlite3 cannot bind booleans.
    deny_outgoing: vm.denyOutgoing ? 1 : 0,
    port_map: "{}",
    state: "pending",
    ip: null,
    error: null,
    created_at: now,
    updated_at: now,
  };
}

export function vmPatchToRow(patch: VmPatch, now: string): Updateable<VmsTable> {
  return {
    state: patch.state,
    ip: patch.ip,
    error: patch.error,
    port_map: patch.portMap === undefined ? undefined : JSON.stringify(patch.portMap),
    updated_at: patch.updatedAt ?? now,
  };
}

export function envFromRow(row: Selectable<EnvsTable>, vms: FleetVmRecord[]): EnvRecord {
  return {
    id: row.id,
    owner: row.owner,
    sshKeys: JSON.parse(row.ssh_keys) as string[],
    lifetime: row.lifetime,
    state: row.state as EnvState,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    operation: row.op_owner === null ? null : { owner: row.op_owner, until: row.op_lease_until ?? "" },
    vms,
  };
}

/** `leaseMs`: how long the creating controller holds the create without renewing (when `operationOwner` is given). */
export function envToRow(env: NewEnv, createdAt: Date, leaseMs: number): Selectable<EnvsTable> {
  return {
    id: env.id,
    owner: env.owner,
    ssh_keys: JSON.stringify(env.sshKeys),
    lifetime: env.lifetime,
    state: env.state ?? "creating",
    created_at: createdAt.toISOString(),
    expires_at: new Date(createdAt.getTime() + env.lifetime * 1000).toISOString(),
    op_owner: env.operationOwner ?? null,
    op_lease_until: env.operationOwner === undefined ? null : new Date(createdAt.getTime() + leaseMs).toISOString(),
  };
}
