// What the controller keeps of a host's reports, whatever kind of host made them (a Corral daemon, a TTstack
// agent: src/controller/drivers/): the host's resources and the list of its VMs, in one shape. They are stored
// as JSON in the host's row (hosts.info, hosts.vms) and read by placement, fleet totals, heartbeats and the
// Virtumancer views. A field a kind of host does not report is left out (optional below).
import type { VmHardware } from "../protocol/ttstack-agent.ts";
import type { VmHealth } from "../protocol/vm-health.ts";
import type { VmState } from "../protocol/vm-lifecycle.ts";

/** Which API a host speaks beyond TTstack's agent API, told apart at registration (GET /api/info). */
export const HOST_KINDS = ["corral", "ttstack", "libvirt"] as const;
export type HostKind = (typeof HOST_KINDS)[number];

export function isHostKind(value: string): value is HostKind {
  return (HOST_KINDS as readonly string[]).includes(value);
}

/** A host's resources (MiB for memory and disk), engines, storage and images. */
export interface HostReport {
  /** The host's own id (TTstack's `host_id`). */
  id: string;
  /** The machine's name (a TTstack agent does not say: its address stands in). */
  hostname: string;
  cpu_total: number;
  /** Hardware threads per core (Corral daemons only). */
  threads_per_core?: number;
  cpu_used: number;
  mem_total: number;
  mem_used: number;
  disk_total: number;
  disk_used: number;
  vm_count: number;
  engines: string[];
  storage: string;
  images: string[];
}

/** One VM a host reported. */
export interface ReportedVm {
  id: string;
  /** The environment it was made for; null for a VM made otherwise (a Slicer sandbox). */
  env_id: string | null;
  /** The fleet controller that made it (Corral daemons keep it); absent when the host does not say. */
  fleet_id?: string | null;
  /** The daemon's host group (Corral daemons only). */
  hostgroup?: string;
  image: string;
  engine: string;
  cpu: number;
  mem: number;
  disk: number;
  /** Guest ports forwarded, 22 included. */
  ports: number[];
  port_map: Record<string, number>;
  /** Absent when the host does not say (a TTstack agent keeps it to itself). */
  deny_outgoing?: boolean;
  /**
   * The host's state for it in Corral's VM lifecycle: a Corral daemon's own (booting, suspended, …), TTstack's
   * VmState (its five names are Corral's too); another kind of host maps its own states onto these.
   */
  state: VmState;
  ip: string;
  mac?: string;
  /** RFC 3339. */
  created_at: string;
  /** When the VM's current run started, RFC 3339 (Corral daemons: its QEMU process); null when it does not run, absent when the host does not say. */
  started_at?: string | null;
  last_error: string | null;
  health?: VmHealth;
  health_detail?: string;
  /** libvirt hosts: the domain's own UUID (Virtumancer's `uuid`); other hosts have none. */
  uuid?: string;
}

/** A VM with its hardware in Virtumancer's shape (libvirt's domain as JSON). */
export type ReportedVmDetail = ReportedVm & { hardware: VmHardware };
