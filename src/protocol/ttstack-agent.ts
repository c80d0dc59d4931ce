// TTstack's per-host agent API as the daemon serves it (docs/ttstack-wire-notes.md §5): what a fleet
// controller calls on each host, TTstack's `tt-ctl` and Corral's alike. Every answer is TTstack's envelope
// (ttstack.ts); the payloads are TTstack's types with Corral's fields beside them. Sizes in MiB, times in Unix
// seconds, as TTstack counts them.
import { Type, type Static } from "@sinclair/typebox";
import { HOSTNAME_PATTERN, IMAGE_PATTERN } from "./names.ts";
import { Envelope, TtAgentInfoFields, TtVmFields } from "./ttstack.ts";
import { VmHealthStateSchema } from "./vm-health.ts";
import { VmStateSchema } from "./vm-states.ts";

/** GET /api/info: TTstack's AgentInfo, and Corral's fields (their presence is how a controller tells a Corral daemon). */
export const AgentInfoSchema = Type.Object({
  ...TtAgentInfoFields,
  corral_version: Type.String({ description: "Corral's version: this host is a Corral daemon (a TTstack agent has no such field)" }),
  hostname: Type.String(),
  threads_per_core: Type.Integer({ description: 'hardware threads per core (Virtumancer\'s "threads")' }),
});
export type AgentInfo = Static<typeof AgentInfoSchema>;

/** The one engine Corral runs. TTstack also names firecracker, docker, bhyve and jail. */
export const CORRAL_ENGINES = ["qemu"] as const;

/** Ids of VMs made through this API: a hostname (the controller gives `ENV-N`; TTstack's gives 12-character UUID prefixes). */
const VmIdSchema = Type.String({ pattern: HOSTNAME_PATTERN, maxLength: 63, description: "a hostname: lower-case letters, digits and dashes (1-63)" });
export const AgentVmParams = Type.Object({ id: VmIdSchema });
/** A VM's id in a path where an unknown one is answered (found or not) rather than refused: TTstack's names. */
export const AgentVmLookupParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) });

const GuestPort = Type.Integer({ minimum: 1, maximum: 65535 });

/** TTstack's defaults (crates/core/src/model.rs:215-222, api.rs:47; the lifetime is Corral's). */
export const TTSTACK_DEFAULTS = { engine: "qemu", cpu: 2, mem: 1024, disk: 40960, lifetime: 21600 } as const;

/**
 * POST /api/vms: TTstack's CreateVmReq (api.rs:9-23). TTstack's controller sends every field; Corral's
 * defaults stand in for one left out. Unknown fields are ignored, as serde does. `fleet_id` is Corral's: the
 * fleet controller that made the VM, so that it never takes another fleet's VM for its own.
 */
export const CreateAgentVmSchema = Type.Object({
  vm_id: VmIdSchema,
  env_id: Type.Optional(Type.String({ maxLength: 128 })),
  image: Type.String({ pattern: IMAGE_PATTERN, description: "an image this host has (GET /api/images)" }),
  engine: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
  cpu: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
  mem: Type.Optional(Type.Integer({ minimum: 128, maximum: 1024 * 1024, description: "MiB" })),
  disk: Type.Optional(Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024, description: "MiB" })),
  ports: Type.Optional(Type.Array(GuestPort, { maxItems: 64 })),
  deny_outgoing: Type.Optional(Type.Boolean()),
  ssh_keys: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 16384 }), { maxItems: 64 })),
  fleet_id: Type.Optional(Type.String({ pattern: "^[A-Za-z0-9-]{1,64}$" })),
});
export type CreateAgentVm = Static<typeof CreateAgentVmSchema>;

/** A VM as the daemon answers it: TTstack's Vm (model.rs:180-199) and Corral's fields beside. */
export const AgentVmSchema = Type.Object({
  ...TtVmFields,
  /** The daemon's own state (its VM lifecycle), richer than TTstack's `state`. */
  status: VmStateSchema,
  hostgroup: Type.String({ description: 'the daemon\'s host group: "ttstack" for VMs made here, else a Slicer group' }),
  ports: Type.Array(Type.Integer()),
  deny_outgoing: Type.Boolean(),
  mac: Type.String(),
  last_error: Type.Union([Type.String(), Type.Null()]),
  /** Corral's: when the VM's current run started (its QEMU process), null when it has none; absent from older daemons. */
  started_at: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  /** The fleet controller that made the VM (CreateAgentVm's `fleet_id`); null for others. */
  fleet_id: Type.Union([Type.String(), Type.Null()]),
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
      /** libvirt's interface type: "bridge" (a TAP on a bridge), "ethernet" (isolated mode's TAP), "user". */
      type: Type.String(),
      mac: Type.Object({ address: Type.String() }),
      /** `bridge`: the bridge the TAP is a port of; absent in other modes and from older daemons. */
      source: Type.Object({
        mode: Type.String(),
        bridge: Type.Optional(Type.String()),
        /** libvirt hosts: the libvirt network the NIC is plugged into (`<source network>`). */
        network: Type.Optional(Type.String()),
      }),
      model: Type.Object({ model_type: Type.String() }),
      /** The host-side device (TAP or veth end) in TAP modes, the guest's "eth0" in user mode; `net_stats` names the NIC by it. Absent from older daemons. */
      target: Type.Optional(Type.Object({ dev: Type.String() })),
      /** Corral's: the guest's address with its prefix ("192.168.137.2/24") and its gateway. Absent from older daemons. */
      ip: Type.Optional(Type.Object({ address: Type.String(), gateway: Type.String() })),
      /** Corral's: the egress policy in force (allow/drop after the VM's override) and whether it opens connections. */
      policy: Type.Optional(
        Type.Object({
          source: Type.String({ description: "host_group or override" }),
          allow: Type.Array(Type.String()),
          drop: Type.Array(Type.String()),
          deny_outgoing: Type.Boolean(),
        }),
      ),
    }),
  ),
});
export type VmHardware = Static<typeof VmHardwareSchema>;
export const AgentVmDetailSchema = Type.Composite([AgentVmSchema, Type.Object({ hardware: VmHardwareSchema })]);
export type AgentVmDetail = Static<typeof AgentVmDetailSchema>;

/** CreateVmResp (api.rs:26-29). */
export const CreateVmRespSchema = Type.Object({ vm: AgentVmSchema });

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

/** The agent API's answers, each in TTstack's envelope. */
export const AGENT_ANSWERS = {
  info: Envelope(AgentInfoSchema),
  images: Envelope(Type.Array(Type.String())),
  vms: Envelope(Type.Array(AgentVmSchema)),
  vm: Envelope(AgentVmDetailSchema),
  created: Envelope(CreateVmRespSchema),
  stats: Envelope(VmStatsSchema),
} as const;
