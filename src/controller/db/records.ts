// What the fleet store hands its callers and takes from them: camelCase records with JSON columns parsed
// (rows.ts converts them to and from the rows of schema.ts).
import type { EnvState, HostState } from "../../protocol/controller.ts";
import type { FleetVmState } from "../../protocol/vm-states.ts";
import type { HostKind, HostReport, ReportedVm } from "../host-report.ts";

/** vCPUs, MiB of memory, MiB of disk. */
export interface Amounts {
  cpu: number;
  mem: number;
  disk: number;
}

export interface HostRecord {
  id: string;
  addr: string;
  uri: string;
  token: string | null;
  /** What answers at `uri`: a Corral daemon or a TTstack agent (told apart at registration), or a libvirt daemon (a libvirt URI). */
  kind: HostKind;
  state: HostState;
  hostname: string;
  /** The host's last GET /api/info answer; null until it first answered. */
  info: HostReport | null;
  /** The host's last GET /api/vms answer (all its VMs, not only the controller's). */
  vms: ReportedVm[];
  /** What the controller's VMs on this host reserve. */
  reserved: Amounts;
  /** Consecutive failed heartbeats. */
  failures: number;
  /**
   * Disconnected through Virtumancer's API: the controller leaves it alone (no heartbeats, no stats, no new
   * VMs; it is `offline`) until it is connected again.
   */
  disconnected: boolean;
  createdAt: string;
  registeredAt: string;
  lastSeenAt: string | null;
  lastError: string | null;
}

/** Where a host is, how to call it and whether it answers: what environments need of their hosts (no info or VM list to parse). */
export type HostEndpoint = Pick<HostRecord, "id" | "addr" | "uri" | "token" | "kind" | "state">;

/** A host to register: created and registered now, nothing reserved, no failures. */
export type NewHost = Pick<HostRecord, "id" | "addr" | "uri" | "kind" | "state" | "hostname"> & Partial<Pick<HostRecord, "token" | "info" | "vms" | "lastSeenAt" | "lastError">>;

export type HostPatch = Partial<
  Pick<HostRecord, "state" | "hostname" | "info" | "vms" | "failures" | "disconnected" | "lastSeenAt" | "lastError" | "addr" | "uri" | "token" | "kind">
>;

// The controller's VM states are wire vocabulary (src/protocol/vm-states.ts).
export { FLEET_VM_STATES, isFleetVmState, type FleetVmState } from "../../protocol/vm-states.ts";

export interface FleetVmRecord {
  id: string;
  envId: string;
  hostId: string;
  image: string;
  engine: string;
  cpu: number;
  mem: number;
  disk: number;
  ports: number[];
  denyOutgoing: boolean;
  /** The VM's own SSH keys, given to it beside its environment's. */
  sshKeys: string[];
  /** Guest port (as a string) -> host port, once the daemon created the VM. */
  portMap: Record<string, number>;
  state: FleetVmState;
  ip: string | null;
  error: string | null;
  createdAt: string;
  updatedAt: string;
}

/** One VM of an environment to create: the request's values with defaults applied. */
export type NewFleetVm = Pick<FleetVmRecord, "id" | "image" | "engine" | "cpu" | "mem" | "disk" | "ports" | "denyOutgoing"> & Partial<Pick<FleetVmRecord, "sshKeys">>;

export type VmPatch = Partial<Pick<FleetVmRecord, "state" | "ip" | "error" | "portMap" | "updatedAt">>;

/** A controller's hold on an environment's operation in flight (see FleetStore.claimEnvOperation). */
export interface EnvOperationLease {
  /** The controller process's id (a new one each time a controller starts). */
  owner: string;
  /** ISO 8601: past it, and not renewed, the operation is abandoned and another controller may take it. */
  until: string;
}

export interface EnvRecord {
  id: string;
  owner: string;
  sshKeys: string[];
  /** Seconds from creation to expiry. */
  lifetime: number;
  state: EnvState;
  createdAt: string;
  expiresAt: string;
  /** Who carries out its create, stop, start or delete now; null between operations. */
  operation: EnvOperationLease | null;
  /** In the order the request listed them. */
  vms: FleetVmRecord[];
}

/**
 * An environment to create; `state` defaults to `creating`. With `operationOwner`, that controller holds the
 * create from the start (a lease as claimEnvOperation gives).
 */
export type NewEnv = Pick<EnvRecord, "id" | "owner" | "sshKeys" | "lifetime"> & { state?: EnvState; operationOwner?: string };
