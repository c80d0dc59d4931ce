// Virtumancer's wire as the controller serves it under /api/v1 (capsali/virtumancer at a458bc2, and the later
// connect/disconnect and stats routes): hosts, host info in libvirt's units (memory in KiB), VMs with both
// the fields its server writes and those its UI reads, hardware in libvirt's domain-XML shape, live stats.
// docs/virtumancer-wire-notes.md traces every field to Virtumancer's file and line. The /ws messages are in
// controller.ts (WsServerMessage), beside the events Corral's own dashboard reads.
import { Type, type Static } from "@sinclair/typebox";
import { HostIdParam } from "./controller.ts";
import { StringEnum } from "./slicer.ts";
import { VmStatsSchema } from "./ttstack-agent.ts";
import { VmHealthStateSchema } from "./vm-health.ts";
import { VmStateSchema } from "./vm-states.ts";

export const VIRTUMANCER_PREFIX = "/api/v1";

/** Virtumancer's host connection states (its storage.HostState): online, disconnected by a user, unreachable. */
export const V1HostStateSchema = StringEnum(["CONNECTED", "DISCONNECTED", "ERROR"]);
export type V1HostState = Static<typeof V1HostStateSchema>;

export const V1HostSchema = Type.Object({
  id: Type.String(),
  uri: Type.String({ description: "http://HOST:PORT of a daemon, or a libvirt daemon's URI (qemu:///system, qemu+ssh://USER@HOST/system)" }),
  state: V1HostStateSchema,
  task_state: Type.String({ description: 'always "": connects are done before the answer' }),
  auto_reconnect_disabled: Type.Boolean({ description: "true after a disconnect, until a connect" }),
});
export type V1Host = Static<typeof V1HostSchema>;

/**
 * POST /api/v1/hosts, as Virtumancer's UI sends it: `{id, uri}`. Other fields are ignored, as Go's decoder
 * ignores them (later UIs send `name`, `state`, `createdAt`…); `token` is Corral's (the daemon's API token;
 * a libvirt URI takes none).
 */
export const V1AddHostSchema = Type.Object(
  {
    id: Type.Optional(HostIdParam),
    uri: Type.String({
      minLength: 1,
      maxLength: 300,
      description: "http://HOST:PORT or https://HOST:PORT of a daemon, or a libvirt URI (qemu:///system, qemu+ssh://USER@HOST/system?keyfile=PATH)",
    }),
    token: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
  },
  { additionalProperties: true },
);
export type V1AddHost = Static<typeof V1AddHostSchema>;

/** libvirt's virNodeInfo as Virtumancer passes it on. */
export const V1HostInfoSchema = Type.Object({
  hostname: Type.String(),
  cpu: Type.Integer({ description: "CPU threads" }),
  memory: Type.Integer({ description: "KiB" }),
  cores: Type.Integer({ description: "CPU cores (libvirt: per socket; Corral does not know sockets)" }),
  threads: Type.Integer({ description: "threads per core" }),
});
export type V1HostInfo = Static<typeof V1HostInfoSchema>;

/** A VM of GET /api/v1/hosts/ID/vms: Virtumancer's VMView with its connector's VMInfo fields, which its UI reads. */
export const V1VmSchema = Type.Object({
  db_id: Type.Integer(),
  name: Type.String(),
  description: Type.String(),
  vcpu_count: Type.Integer(),
  memory_bytes: Type.Integer({ description: "bytes" }),
  is_template: Type.Boolean(),
  cpu_model: Type.String(),
  cpu_topology_json: Type.String(),
  state: Type.Integer({ description: "libvirt's virDomainState: 0 none, 1 running, 3 paused, 4 shutting down, 5 shut off, 6 crashed" }),
  graphics: Type.Object({ vnc: Type.Boolean(), spice: Type.Boolean() }),
  max_mem: Type.Integer({ description: "KiB" }),
  memory: Type.Integer({ description: "KiB: libvirt's current allocation" }),
  cpu_time: Type.Integer({ description: "ns; 0 in lists (live CPU time is in the stats)" }),
  uptime: Type.Integer({ description: "seconds since the VM started; -1 when it does not run" }),
  id: Type.Integer({ description: "libvirt's domain id: 0 when it does not run" }),
  uuid: Type.String(),
  vcpu: Type.Integer(),
  persistent: Type.Boolean(),
  autostart: Type.Boolean(),
  /** Corral's: the host's state name, the environment that made it, what its host says of its health. */
  status: VmStateSchema,
  env_id: Type.Union([Type.String(), Type.Null()]),
  health: Type.Optional(VmHealthStateSchema),
  health_detail: Type.Optional(Type.String()),
});
export type V1Vm = Static<typeof V1VmSchema>;

const V1DiskSchema = Type.Object({
  type: Type.String(),
  device: Type.String(),
  driver: Type.Object({ driver_name: Type.String(), type: Type.String() }),
  /** Virtumancer's struct has no JSON tags here: Go writes the field names. */
  Source: Type.Object({ File: Type.String(), Dev: Type.String() }),
  path: Type.String(),
  target: Type.Object({ dev: Type.String(), bus: Type.String() }),
  /** Corral's. */
  size_mib: Type.Integer(),
});

const V1NetworkSchema = Type.Object({
  type: Type.String(),
  mac: Type.Object({ address: Type.String() }),
  source: Type.Object({ bridge: Type.String(), network: Type.String({ description: 'the libvirt network (libvirt hosts); "" otherwise' }) }),
  /** `model_type` as Virtumancer's server writes it, `type` as its UI reads it. */
  model: Type.Object({ model_type: Type.String(), type: Type.String() }),
  target: Type.Object({ dev: Type.String() }),
});

export const V1HardwareSchema = Type.Object({ disks: Type.Array(V1DiskSchema), networks: Type.Array(V1NetworkSchema) });
export type V1Hardware = Static<typeof V1HardwareSchema>;

/** The stats are the daemon's, already in libvirt's VMStats shape. */
export const V1StatsSchema = VmStatsSchema;

/** Virtumancer's five power routes, each POST /api/v1/hosts/HOST/vms/NAME/ACTION -> 204. */
export const V1_POWER_ACTIONS = ["start", "shutdown", "reboot", "forceoff", "forcereset"] as const;
export type V1PowerAction = (typeof V1_POWER_ACTIONS)[number];
