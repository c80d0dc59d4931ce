// TTstack's per-host agent API as the daemon serves it (seed 002, "Agent Endpoints"): the controller reads
// a host's resources and images here. Sizes are in MiB, as TTstack counts them.
import { Type, type Static } from "@sinclair/typebox";
import { HOSTNAME_PATTERN, IMAGE_PATTERN } from "./names.ts";
import { VmHealthStateSchema } from "./vm-health.ts";

export const HostInfoSchema = Type.Object({
  id: Type.String({ description: "this host's id, generated once and kept in the state directory" }),
  hostname: Type.String(),
  cpu_total: Type.Integer({ description: "host CPU threads" }),
  threads_per_core: Type.Optional(Type.Integer({ description: "hardware threads per core (Virtumancer's \"threads\")" })),
  cpu_used: Type.Integer({ description: "vCPUs of the VMs that run" }),
  mem_total: Type.Integer({ description: "host memory, MiB" }),
  mem_used: Type.Integer({ description: "memory of the VMs that run, MiB" }),
  disk_total: Type.Integer({ description: "the state directory's filesystem, MiB" }),
  disk_used: Type.Integer({ description: "used on that filesystem, MiB" }),
  vm_count: Type.Integer({ description: "VMs that run" }),
  engines: Type.Array(Type.String(), { description: "the engines this host runs" }),
  storage: Type.String({ description: '"file": qcow2 files' }),
  images: Type.Array(Type.String()),
});

export const AgentImageSchema = Type.Object({
  name: Type.String(),
  version: Type.String(),
  kernel_release: Type.String(),
  size_mib: Type.Integer(),
  created_at: Type.String(),
});

export type HostInfo = Static<typeof HostInfoSchema>;
export type AgentImage = Static<typeof AgentImageSchema>;

/** The one engine Corral runs. TTstack also names firecracker, docker, bhyve and jail. */
export const CORRAL_ENGINES = ["qemu"] as const;

/** Ids of VMs made through this API: a hostname (the controller gives `ENV-N`). */
const VmIdSchema = Type.String({ pattern: HOSTNAME_PATTERN, maxLength: 63, description: "a hostname: lower-case letters, digits and dashes (1-63)" });
export const AgentVmParams = Type.Object({ id: VmIdSchema });

const GuestPort = Type.Integer({ minimum: 1, maximum: 65535 });

/** TTstack's defaults (seed 002, VmSpec). */
export const TTSTACK_DEFAULTS = { engine: "qemu", cpu: 2, mem: 1024, disk: 40960, lifetime: 21600 } as const;

/** POST /api/vms on a daemon (what a controller sends for each VM of an environment). */
export const CreateAgentVmSchema = Type.Object(
  {
    vm_id: VmIdSchema,
    env_id: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    image: Type.String({ pattern: IMAGE_PATTERN, description: "an image this host has (GET /api/images)" }),
    engine: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
    cpu: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    mem: Type.Optional(Type.Integer({ minimum: 128, maximum: 1024 * 1024, description: "MiB" })),
    disk: Type.Optional(Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024, description: "MiB" })),
    ports: Type.Optional(Type.Array(GuestPort, { maxItems: 64 })),
    deny_outgoing: Type.Optional(Type.Boolean()),
    ssh_keys: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 16384 }), { maxItems: 64 })),
  },
  { additionalProperties: false },
);
export type CreateAgentVm = Static<typeof CreateAgentVmSchema>;

/** Guest port -> host port, keys are the guest ports as strings (JSON objects have string keys). */
export const PortMapSchema = Type.Record(Type.String(), Type.Integer());

export const AgentVmSchema = Type.Object({
  id: Type.String(),
  env_id: Type.Union([Type.String(), Type.Null()]),
  hostgroup: Type.String({ description: "the daemon's host group: \"ttstack\" for VMs made here, else a Slicer group" }),
  image: Type.String(),
  engine: Type.String(),
  cpu: Type.Integer(),
  mem: Type.Integer({ description: "MiB" }),
  disk: Type.Integer({ description: "MiB" }),
  ports: Type.Array(Type.Integer()),
  port_map: PortMapSchema,
  deny_outgoing: Type.Boolean(),
  state: Type.String({ description: "creating, booting, running, paused, suspending, suspended, stopping, stopped, failed" }),
  ip: Type.String(),
  mac: Type.String(),
  created_at: Type.String(),
  last_error: Type.Union([Type.String(), Type.Null()]),
  /** Corral's: when the VM's current run started (its QEMU process), null when it has none; absent from older daemons. */
  started_at: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  /** Corral's: what the VM is doing now (see vm-health.ts); absent from daemons older than the field. */
  health: Type.Optional(VmHealthStateSchema),
  health_detail: Type.Optional(Type.String()),
});
export type AgentVm = Static<typeof AgentVmSchema>;

/** GET /api/vms/ID adds the hardware, in Virtumancer's shape (libvirt's domain XML as JSON). */
export const VmHardwareSchema = Type.Object({
  disks: Type.Array(
    Type.Object({
      type: Type.String(),
      device: Type.String(),
      driver: Type.Object({ driver_name: Type.String(), type: Type.String() }),
      path: Type.String(),
      target: Type.Object({ dev: Type.String(), bus: Type.String() }),
      size_mib: Type.Integer(),
    }),
  ),
  networks: Type.Array(
    Type.Object({
      type: Type.String(),
      mac: Type.Object({ address: Type.String() }),
      source: Type.Object({ mode: Type.String() }),
      model: Type.Object({ model_type: Type.String() }),
    }),
  ),
});
export type VmHardware = Static<typeof VmHardwareSchema>;
export const AgentVmDetailSchema = Type.Composite([AgentVmSchema, Type.Object({ hardware: VmHardwareSchema })]);
export type AgentVmDetail = Static<typeof AgentVmDetailSchema>;

/** POST /api/vms/ID/stop: `force` skips flushing the guest's disks (Virtumancer's "destroy"). */
export const StopAgentVmQuerySchema = Type.Object({ force: Type.Optional(Type.Boolean()) });

/**
 * GET /api/vms/ID/stats: live numbers in Virtumancer's `vm-stats-updated` shape. `state` uses libvirt's
 * numbers (1 running, 3 paused, 5 shut off); memory in KiB; cpu_time in ns of the QEMU process.
 */
export const VmStatsSchema = Type.Object({
  state: Type.Integer(),
  memory: Type.Integer({ description: "KiB in use by the guest (its total when the agent cannot tell)" }),
  max_mem: Type.Integer({ description: "KiB" }),
  vcpu: Type.Integer(),
  cpu_time: Type.Integer({ description: "ns of CPU the VM's QEMU process has used" }),
  disk_stats: Type.Array(Type.Object({ device: Type.String(), read_bytes: Type.Integer(), write_bytes: Type.Integer() })),
  net_stats: Type.Array(Type.Object({ device: Type.String(), read_bytes: Type.Integer(), write_bytes: Type.Integer() })),
});
export type VmStats = Static<typeof VmStatsSchema>;
