// The fleet controller's tables as kysely sees them: the same columns in SQLite and PostgreSQL. JSON is kept
// as TEXT and timestamps as ISO 8601 TEXT in both, so the two dialects store and compare values alike.
import type { Kysely, Transaction } from "kysely";

export interface HostsTable {
  id: string;
  /** HOST:PORT of the daemon. */
  addr: string;
  /** http://HOST:PORT of the daemon. */
  uri: string;
  /** The daemon's API token, when it runs with auth. */
  token: string | null;
  /** What answers there (host-report.ts's HostKind): "corral" (a Corral daemon), "ttstack" (a TTstack agent) or "libvirt" (a libvirt daemon by URI). */
  kind: string;
  state: string;
  hostname: string;
  /** JSON of the host's last GET /api/info answer, as the controller keeps it (HostReport). */
  info: string | null;
  /** JSON of the host's last GET /api/vms answer, as the controller keeps it (ReportedVm[]). */
  vms: string;
  // What placement reads of `info`, kept beside it whenever it is written (rows.ts): a placement reads every
  // host, and parsing each one's whole report took most of a create's time at 1,000 hosts.
  /** `info.cpu_total`, `mem_total` (MiB), `disk_total` (MiB); null while `info` is. */
  cpu_total: number | null;
  mem_total: number | null;
  disk_total: number | null;
  /** JSON string[] of `info.engines` and `info.images`; null while `info` is. */
  engines: string | null;
  images: string | null;
  reserved_cpu: number;
  reserved_mem: number;
  reserved_disk: number;
  /** Consecutive failed heartbeats. */
  failures: number;
  /** 1 once disconnected (Virtumancer's disconnect): no heartbeats until it is connected again. */
  disconnected: number;
  created_at: string;
  registered_at: string;
  last_seen_at: string | null;
  last_error: string | null;
}

export interface EnvsTable {
  id: string;
  owner: string;
  /** JSON string[]. */
  ssh_keys: string;
  /** Seconds. */
  lifetime: number;
  state: string;
  created_at: string;
  expires_at: string;
  /** The controller process carrying out the environment's create, stop, start or delete; null between operations. */
  op_owner: string | null;
  /** Until when `op_owner` holds the operation unless it renews (ISO 8601). */
  op_lease_until: string | null;
}

export interface VmsTable {
  id: string;
  env_id: string;
  /** The VM's index in its environment's request: VMs are listed in the order they were asked for. */
  position: number;
  host_id: string;
  image: string;
  engine: string;
  cpu: number;
  mem: number;
  disk: number;
  /** JSON number[]. */
  ports: string;
  /** JSON string[]: the VM's own SSH keys, beside its environment's (TTstack's per-VM `ssh_keys`). */
  ssh_keys: string;
  /** 0 or 1. */
  deny_outgoing: number;
  /** JSON object: guest port (as a string) -> host port. */
  port_map: string;
  state: string;
  ip: string | null;
  error: string | null;
  created_at: string;
  updated_at: string;
}

/** Facts about the fleet itself, one row each (`fleet_id`: this fleet's id, made once, sent to hosts with each VM). */
export interface SettingsTable {
  key: string;
  value: string;
}

export interface FleetDatabase {
  settings: SettingsTable;
  hosts: HostsTable;
  envs: EnvsTable;
  vms: VmsTable;
}

export type FleetDb = Kysely<FleetDatabase>;
/** The database or an open transaction: queries that can run in either take this. */
export type FleetQueries = Kysely<FleetDatabase> | Transaction<FleetDatabase>;
