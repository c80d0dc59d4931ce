// The fleet controller's wire shapes: TTstack's controller API (docs/ttstack-wire-notes.md §4: hosts by
// `addr`, environments, fleet status, images, in TTstack's envelope with TTstack's types and Corral's fields
// beside them) and Virtumancer's (seed 003: hosts by `id` and `uri`, VMs per host, hardware, power actions,
// the /ws messages). One host registry serves both host bodies (DESIGN.md, "The three APIs").
import { Type, type Static } from "@sinclair/typebox";
import { IMAGE_PATTERN } from "./names.ts";
import { StringEnum } from "./slicer.ts";
import { Envelope, TtAgentInfoFields, TtEnvStateSchema, TtHostStateSchema, TtResourceSchema, TtVmFields } from "./ttstack.ts";
import { VmHardwareSchema, type VmStatsSchema } from "./ttstack-agent.ts";
import { VmHealthStateSchema } from "./vm-health.ts";
import { EnvStateSchema } from "./env-lifecycle.ts";
import { FleetVmStateSchema, VmStateSchema } from "./vm-states.ts";

/** What the VM's host last reported of its health (see vm-health.ts); absent when the host has not said. */
const ReportedHealth = {
  health: Type.Optional(VmHealthStateSchema),
  health_detail: Type.Optional(Type.String()),
};

/**
 * Environment ids as TTstack accepts names (crates/core/src/model.rs:236-257): 1-128 letters, digits, ".",
 * "_" and "-", not starting with "." and without "..". A VM's id (its hostname on a Corral daemon) is derived
 * from it (src/controller/vm-ids.ts).
 */
export const ENV_ID_PATTERN = "^(?!\\.)(?!.*\\.\\.)[A-Za-z0-9._-]{1,128}$";
export const HOST_ID_PATTERN = "^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,62})$";

export const HostIdParam = Type.String({ pattern: HOST_ID_PATTERN, description: "a host id: letters, digits, '.', '_' and '-' (1-63)" });
export const HostParams = Type.Object({ id: HostIdParam });
const EnvId = Type.String({ pattern: ENV_ID_PATTERN, description: "letters, digits, '.', '_' and '-' (1-128), not starting with '.', without '..'" });
export const EnvParams = Type.Object({ id: EnvId });
/** The most environments one page of GET /api/envs holds. */
export const ENV_PAGE_MAX = 1000;
/**
 * GET /api/envs: without `limit`, every environment (TTstack's clients read the whole list); with it, a page
 * of at most that many, after the one `after` names (the `next` of the page before).
 */
export const EnvListQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: ENV_PAGE_MAX, description: `at most this many environments (1-${ENV_PAGE_MAX}), then \`next\`` })),
  after: Type.Optional(Type.String({ minLength: 1, maxLength: 400, description: "the `next` of the page before" })),
});
/** A VM looked up by id: any name TTstack could give one (an unknown one is a 404). */
export const VmIdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 128 }) });
/**
 * A VM's name on its host: a daemon's VMs are hostnames, a libvirt host's domains are named as libvirt lets
 * them be (`Win10`, `ubuntu_22.04`): anything but '/', control characters, or a leading '-' (virsh would take
 * it for an option), at most 200 characters. The host refuses a name it has not (404).
 */
export const HOST_VM_NAME_PATTERN = "^[^/\\x00-\\x1f\\x7f-][^/\\x00-\\x1f\\x7f]{0,199}$";
export const HostVmParams = Type.Object({ hostId: HostIdParam, vmName: Type.String({ pattern: HOST_VM_NAME_PATTERN, maxLength: 200 }) });

/**
 * POST /api/hosts: TTstack's `{addr: "HOST:PORT"}` or Virtumancer's `{id, uri: "http://HOST:PORT"}`.
 * `token` is the host's API token when it runs with auth (a Corral addition; without it the controller sends
 * its own key, as TTstack's controller does). Without `id`, the host's own id (its /api/info `host_id`) is
 * used. Unknown fields are ignored, as TTstack's serde ignores them.
 */
export const RegisterHostSchema = Type.Object({
  id: Type.Optional(HostIdParam),
  addr: Type.Optional(Type.String({ minLength: 3, maxLength: 255, description: "HOST:PORT of the host's agent API" })),
  uri: Type.Optional(
    Type.String({
      minLength: 8,
      maxLength: 300,
      description: "http://HOST:PORT or https://HOST:PORT of the host, or a libvirt daemon's URI (qemu:///system, qemu+ssh://USER@HOST/system)",
    }),
  ),
  token: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
});
export type RegisterHost = Static<typeof RegisterHostSchema>;

export const HostStateSchema = StringEnum(["online", "offline"]);
export type HostState = Static<typeof HostStateSchema>;

const Amounts = Type.Object({ cpu: Type.Integer(), mem: Type.Integer({ description: "MiB" }), disk: Type.Integer({ description: "MiB" }) });

/** TTstack's Host (crates/core/src/model.rs:165-177) and Corral's fields beside it. */
export const HostSchema = Type.Object({
  id: Type.String(),
  addr: Type.String(),
  /** What the host last reported (GET /api/info): totals and what its running VMs use. */
  resource: TtResourceSchema,
  state: TtHostStateSchema,
  engines: TtAgentInfoFields.engines,
  storage: TtAgentInfoFields.storage,
  registered_at: Type.Integer({ description: "Unix seconds" }),
  uri: Type.String(),
  kind: StringEnum(["corral", "ttstack", "libvirt"], { description: "what answers there: a Corral daemon, a TTstack agent or a libvirt daemon (by its URI)" }),
  hostname: Type.String(),
  /** What the controller's VMs on this host reserve (placement counts these against the totals). */
  reserved: Amounts,
  images: Type.Array(Type.String()),
  vm_count: Type.Integer({ description: "VMs the host reports (all of them, not only the controller's)" }),
  last_seen_at: Type.Union([Type.Integer({ description: "Unix seconds" }), Type.Null()]),
  last_error: Type.Union([Type.String(), Type.Null()]),
});
export type Host = Static<typeof HostSchema>;

/** GET /api/hosts/ID/info, Virtumancer's shape: memory in bytes. */
export const HostInfoViewSchema = Type.Object({
  hostname: Type.String(),
  cpu: Type.Integer(),
  memory: Type.Integer({ description: "bytes" }),
  cores: Type.Integer(),
  threads: Type.Integer({ description: "threads per core" }),
});

/** The sizes a VM may be given (the CLI checks its flags against the same). */
export const VM_BOUNDS = {
  cpu: { minimum: 1, maximum: 64 },
  mem: { minimum: 128, maximum: 1024 * 1024 },
  disk: { minimum: 1024, maximum: 64 * 1024 * 1024 },
} as const;

/** One VM of an environment request (TTstack's VmSpec, crates/core/src/api.rs:44-59); defaults in TTSTACK_DEFAULTS. */
export const VmSpecSchema = Type.Object({
  image: Type.String({ pattern: IMAGE_PATTERN, description: "an image name" }),
  engine: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
  cpu: Type.Optional(Type.Union([Type.Integer(VM_BOUNDS.cpu), Type.Null()], { description: "vCPUs; null: the default" })),
  mem: Type.Optional(Type.Union([Type.Integer(VM_BOUNDS.mem), Type.Null()], { description: "MiB; null: the default" })),
  disk: Type.Optional(Type.Union([Type.Integer(VM_BOUNDS.disk), Type.Null()], { description: "MiB; null: the default" })),
  ports: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { maxItems: 64 })),
  deny_outgoing: Type.Optional(Type.Boolean()),
  ssh_keys: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 16384 }), { maxItems: 64, description: "this VM's keys, beside the environment's" })),
});
export type VmSpec = Static<typeof VmSpecSchema>;

export const MAX_LIFETIME_SECONDS = 30 * 24 * 3600;

/** POST /api/envs (TTstack's CreateEnvReq, crates/core/src/api.rs:66-76). Unknown fields are ignored, as serde does. */
export const CreateEnvSchema = Type.Object({
  id: EnvId,
  owner: Type.Optional(Type.String({ maxLength: 128 })),
  ssh_keys: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 16384 }), { maxItems: 64 })),
  vms: Type.Array(VmSpecSchema, { minItems: 1, maxItems: 64 }),
  lifetime: Type.Optional(Type.Union([Type.Integer({ minimum: 0, maximum: MAX_LIFETIME_SECONDS }), Type.Null()], { description: "seconds; absent, null or 0: 21600" })),
});
export type CreateEnv = Static<typeof CreateEnvSchema>;

/**
 * A VM of an environment: TTstack's Vm (crates/core/src/model.rs:180-199) and Corral's fields beside it.
 * `state` is TTstack's; `status` is the controller's own: the daemon's state (creating, booting, running,
 * paused, stopping, stopped, suspended, failed) as last seen, or `pending` (placed, not yet created on its
 * host), `error` (its host refused or failed the create), `lost` (its host no longer has it), `deleting`.
 */
export const FleetVmSchema = Type.Object({
  ...TtVmFields,
  status: FleetVmStateSchema,
  /** Where to reach the VM's mapped ports: the host part of its host's address. */
  host_addr: Type.String(),
  ports: Type.Array(Type.Integer()),
  deny_outgoing: Type.Boolean(),
  error: Type.Union([Type.String(), Type.Null()]),
  ...ReportedHealth,
});
export type FleetVm = Static<typeof FleetVmSchema>;

/** Corral's environment states and their transitions: src/protocol/env-lifecycle.ts. */
export { EnvStateSchema, type EnvState } from "./env-lifecycle.ts";

/** TTstack's Env (crates/core/src/model.rs:202-211): no VMs inline (EnvDetail has them); Corral's fields beside. */
export const EnvSchema = Type.Object({
  id: Type.String(),
  owner: Type.String(),
  vm_ids: Type.Array(Type.String()),
  created_at: Type.Integer({ description: "Unix seconds" }),
  expires_at: Type.Integer({ description: "Unix seconds" }),
  state: TtEnvStateSchema,
  status: EnvStateSchema,
  lifetime: Type.Integer({ description: "seconds" }),
  ssh_keys: Type.Array(Type.String()),
});
export type Env = Static<typeof EnvSchema>;

/** TTstack's EnvDetail (crates/core/src/api.rs:80-86): `warnings` only when there are some (VMs that failed). */
export const EnvDetailSchema = Type.Object({
  env: EnvSchema,
  vms: Type.Array(FleetVmSchema),
  warnings: Type.Optional(Type.Array(Type.String())),
});
export type EnvDetail = Static<typeof EnvDetailSchema>;

/** GET /api/images: TTstack's ImageInfo (crates/core/src/api.rs:96-99), one per image per host. */
export const FleetImageSchema = Type.Object({ name: Type.String(), host_id: Type.String() });
export type FleetImage = Static<typeof FleetImageSchema>;

/**
 * GET /api/status: TTstack's FleetStatus (crates/core/src/api.rs:103-114), its ten flat fields, and Corral's
 * beside (offline hosts, VMs by state, what the controller's VMs reserve). Totals and used are over online
 * hosts; cpu in vCPUs, mem and disk in MiB.
 */
export const FleetStatusSchema = Type.Object({
  hosts: Type.Integer(),
  hosts_online: Type.Integer(),
  total_vms: Type.Integer(),
  total_envs: Type.Integer(),
  cpu_total: Type.Integer(),
  cpu_used: Type.Integer(),
  mem_total: Type.Integer(),
  mem_used: Type.Integer(),
  disk_total: Type.Integer(),
  disk_used: Type.Integer(),
  hosts_offline: Type.Integer(),
  vms_running: Type.Integer(),
  vms_stopped: Type.Integer(),
  vms_other: Type.Integer(),
  cpu_reserved: Type.Integer({ description: "reserved by the controller's VMs" }),
  mem_reserved: Type.Integer(),
  disk_reserved: Type.Integer(),
});
export type FleetStatus = Static<typeof FleetStatusSchema>;

/** The TTstack routes' answers, each in TTstack's envelope. */
export const CONTROLLER_ANSWERS = {
  host: Envelope(HostSchema),
  hosts: Envelope(Type.Array(HostSchema)),
  envs: Envelope(Type.Array(EnvSchema)),
  /** A page: `next` is the `after` of the following page, null after the last. */
  envPage: Type.Object({ ok: Type.Literal(true), data: Type.Array(EnvSchema), next: Type.Union([Type.String(), Type.Null()]) }),
  envDetail: Envelope(EnvDetailSchema),
  vm: Envelope(FleetVmSchema),
  images: Envelope(Type.Array(FleetImageSchema)),
  status: Envelope(FleetStatusSchema),
} as const;

/** GET /api/hosts/ID/vms, Virtumancer's VM list entry (libvirt state numbers: 1 running, 3 paused, 5 off). */
export const HostVmSchema = Type.Object({
  db_id: Type.Integer(),
  name: Type.String(),
  description: Type.String(),
  vcpu_count: Type.Integer(),
  memory_bytes: Type.Integer(),
  state: Type.Integer(),
  graphics: Type.Object({ vnc: Type.Boolean(), spice: Type.Boolean() }),
  /** Corral additions: the host's state name and the environment, if the controller made the VM. */
  status: VmStateSchema,
  env_id: Type.Union([Type.String(), Type.Null()]),
  ...ReportedHealth,
});
export type HostVm = Static<typeof HostVmSchema>;

export const HostVmHardwareSchema = VmHardwareSchema;

export const VmActionSchema = Type.Object({ action: StringEnum(["start", "shutdown", "reboot", "destroy", "reset"]) }, { additionalProperties: false });
export type VmAction = Static<typeof VmActionSchema>["action"];

/**
 * libvirt's domain state number (virDomainState) for a daemon's VM state, as Virtumancer shows it: 0 no state
 * yet (creating), 1 running, 3 paused, 4 being shut down, 5 shut off, 6 crashed. A suspended VM is saved to
 * disk with no process left, as libvirt's managed save leaves a domain shut off (5): its UI offers Start, which
 * restores it. libvirt's 7 (pmsuspended) is a guest asleep in its own RAM, which Corral's VMs never are.
 * A libvirt host's driver reports its domains in these names too (drivers/libvirt/virsh-output.ts).
 */
export function libvirtState(state: string): number {
  if (state === "running" || state === "booting") return 1;
  if (state === "paused") return 3;
  if (state === "stopping" || state === "suspending") return 4;
  if (state === "failed") return 6;
  if (state === "creating") return 0;
  return 5;
}

// ---- /ws ----

export interface VmRef {
  hostId: string;
  vmName: string;
}

/** What a /ws client may send. */
export type WsClientMessage = { type: "subscribe-vm-stats"; payload: VmRef } | { type: "unsubscribe-vm-stats"; payload: VmRef };

/**
 * What the controller sends on /ws, as Virtumancer's hub writes it: an empty payload is left out
 * (`hosts-changed`). `envs-changed` and `error` are Corral's additions.
 */
export type WsServerMessage =
  | { type: "hosts-changed" }
  | { type: "vms-changed"; payload: { hostId: string } }
  | { type: "host-connection-changed"; payload: { hostId: string; connected: boolean } }
  | { type: "envs-changed"; payload: { envId: string } }
  | { type: "vm-stats-updated"; payload: VmRef & { stats: Static<typeof VmStatsSchema> } }
  | { type: "error"; payload: { error: string; code: string } };
