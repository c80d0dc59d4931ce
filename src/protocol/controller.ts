// The fleet controller's wire shapes: TTstack's controller API (seed 002: hosts by `addr`, environments,
// fleet status, images) and Virtumancer's (seed 003: hosts by `id` and `uri`, VMs per host, hardware, power
// actions, the /ws messages). One host registry serves both host bodies (DESIGN.md, "The three APIs").
import { Type, type Static } from "@sinclair/typebox";
import { HOSTNAME_PATTERN, IMAGE_PATTERN } from "./names.ts";
import { StringEnum } from "./slicer.ts";
import { PortMapSchema, VmHardwareSchema, VmStatsSchema } from "./ttstack-agent.ts";
import { VmHealthStateSchema } from "./vm-health.ts";

/** What the VM's host last reported of its health (see vm-health.ts); absent when the host has not said. */
const ReportedHealth = {
  health: Type.Optional(VmHealthStateSchema),
  health_detail: Type.Optional(Type.String()),
};

/** Host ids and environment ids: DNS labels, since VM ids (`ENV-N`) become daemon hostnames. */
export const ENV_ID_PATTERN = "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$";
export const HOST_ID_PATTERN = "^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,62})$";

export const HostIdParam = Type.String({ pattern: HOST_ID_PATTERN, description: "a host id: letters, digits, '.', '_' and '-' (1-63)" });
export const HostParams = Type.Object({ id: HostIdParam });
export const EnvParams = Type.Object({ id: Type.String({ pattern: ENV_ID_PATTERN }) });
export const VmIdParams = Type.Object({ id: Type.String({ pattern: HOSTNAME_PATTERN, maxLength: 63 }) });
export const HostVmParams = Type.Object({ hostId: HostIdParam, vmName: Type.String({ pattern: HOSTNAME_PATTERN, maxLength: 63 }) });

/**
 * POST /api/hosts: TTstack's `{addr: "HOST:PORT"}` or Virtumancer's `{id, uri: "http://HOST:PORT"}`.
 * `token` is the daemon's API token when it runs with auth (a Corral addition). Without `id`, the host's
 * own id (its /api/info `id`) is used.
 */
export const RegisterHostSchema = Type.Object(
  {
    id: Type.Optional(HostIdParam),
    addr: Type.Optional(Type.String({ minLength: 3, maxLength: 255, description: "HOST:PORT of the daemon" })),
    uri: Type.Optional(Type.String({ minLength: 8, maxLength: 300, description: "http://HOST:PORT or https://HOST:PORT of the daemon" })),
    token: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
  },
  { additionalProperties: false },
);
export type RegisterHost = Static<typeof RegisterHostSchema>;

export const HostStateSchema = StringEnum(["online", "offline"]);
export type HostState = Static<typeof HostStateSchema>;

const Amounts = Type.Object({ cpu: Type.Integer(), mem: Type.Integer({ description: "MiB" }), disk: Type.Integer({ description: "MiB" }) });

/** A host as both seeds show it: TTstack's fields and Virtumancer's (`id`, `uri`, `created_at`). */
export const HostSchema = Type.Object({
  id: Type.String(),
  addr: Type.String(),
  uri: Type.String(),
  state: HostStateSchema,
  hostname: Type.String(),
  /** What the daemon last reported (GET /api/info): totals and what its running VMs use. */
  resource: Type.Object({
    cpu_total: Type.Integer(),
    cpu_used: Type.Integer(),
    mem_total: Type.Integer(),
    mem_used: Type.Integer(),
    disk_total: Type.Integer(),
    disk_used: Type.Integer(),
    vm_count: Type.Integer(),
  }),
  /** What the controller's VMs on this host reserve (placement counts these against the totals). */
  reserved: Amounts,
  engines: Type.Array(Type.String()),
  storage: Type.String(),
  images: Type.Array(Type.String()),
  vm_count: Type.Integer({ description: "VMs the daemon reports (all of them, not only the controller's)" }),
  created_at: Type.String(),
  registered_at: Type.String(),
  last_seen_at: Type.Union([Type.String(), Type.Null()]),
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

/** One VM of an environment request (seed 002, VmSpec); defaults in TTSTACK_DEFAULTS. */
export const VmSpecSchema = Type.Object(
  {
    image: Type.String({ pattern: IMAGE_PATTERN, description: "an image name" }),
    engine: Type.Optional(Type.String({ minLength: 1, maxLength: 32 })),
    cpu: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    mem: Type.Optional(Type.Integer({ minimum: 128, maximum: 1024 * 1024, description: "MiB" })),
    disk: Type.Optional(Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024, description: "MiB" })),
    ports: Type.Optional(Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), { maxItems: 64 })),
    deny_outgoing: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type VmSpec = Static<typeof VmSpecSchema>;

export const MAX_LIFETIME_SECONDS = 30 * 24 * 3600;

/** POST /api/envs (seed 002, CreateEnvReq). */
export const CreateEnvSchema = Type.Object(
  {
    id: Type.String({ pattern: ENV_ID_PATTERN, description: "lower-case letters, digits and dashes (1-40)" }),
    owner: Type.Optional(Type.String({ maxLength: 128 })),
    ssh_keys: Type.Array(Type.String({ minLength: 1, maxLength: 16384 }), { maxItems: 64 }),
    vms: Type.Array(VmSpecSchema, { minItems: 1, maxItems: 64 }),
    lifetime: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_LIFETIME_SECONDS, description: "seconds (default 21600)" })),
  },
  { additionalProperties: false },
);
export type CreateEnv = Static<typeof CreateEnvSchema>;

/**
 * A VM's state as the controller knows it: the daemon's state (creating, booting, running, paused, stopping,
 * stopped, suspended, failed) as last seen, or the controller's own: `pending` (placed, not yet created on
 * its host), `error` (its host refused or failed the create), `lost` (its host no longer has it), `deleting`.
 */
export const FleetVmSchema = Type.Object({
  id: Type.String(),
  env_id: Type.String(),
  host_id: Type.String(),
  /** Where to reach the VM's mapped ports: the host part of the daemon's address. */
  host_addr: Type.String(),
  image: Type.String(),
  engine: Type.String(),
  cpu: Type.Integer(),
  mem: Type.Integer(),
  disk: Type.Integer(),
  ports: Type.Array(Type.Integer()),
  port_map: PortMapSchema,
  deny_outgoing: Type.Boolean(),
  state: Type.String(),
  ip: Type.Union([Type.String(), Type.Null()]),
  error: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String(),
  ...ReportedHealth,
});
export type FleetVm = Static<typeof FleetVmSchema>;

/**
 * `running`: every VM runs; `partial`: some VMs failed (see each VM's `error`); `failed`: none could be
 * created; `stopped`; `deleting`: being destroyed (expired or asked), until every host confirmed.
 */
export const EnvStateSchema = StringEnum(["creating", "running", "partial", "failed", "stopping", "stopped", "starting", "deleting"]);
export type EnvState = Static<typeof EnvStateSchema>;

export const EnvSchema = Type.Object({
  id: Type.String(),
  owner: Type.String(),
  ssh_keys: Type.Array(Type.String()),
  lifetime: Type.Integer(),
  state: EnvStateSchema,
  created_at: Type.String(),
  expires_at: Type.String(),
  vms: Type.Array(FleetVmSchema),
});
export type Env = Static<typeof EnvSchema>;

/** GET /api/images: every image of the fleet, with the hosts that have it. */
export const FleetImageSchema = Type.Object({ name: Type.String(), hosts: Type.Array(Type.String()) });
export type FleetImage = Static<typeof FleetImageSchema>;

const Capacity = Type.Object({
  total: Type.Integer({ description: "sum over online hosts" }),
  reserved: Type.Integer({ description: "reserved by the controller's VMs" }),
  used: Type.Integer({ description: "used by running VMs, as the hosts report" }),
});

/** GET /api/status: fleet totals (cpu in vCPUs, mem and disk in MiB). */
export const FleetStatusSchema = Type.Object({
  hosts: Type.Object({ total: Type.Integer(), online: Type.Integer(), offline: Type.Integer() }),
  envs: Type.Integer(),
  vms: Type.Object({ total: Type.Integer(), running: Type.Integer(), stopped: Type.Integer(), other: Type.Integer() }),
  cpu: Capacity,
  mem: Capacity,
  disk: Capacity,
});
export type FleetStatus = Static<typeof FleetStatusSchema>;

/** GET /api/hosts/ID/vms, Virtumancer's VM list entry (libvirt state numbers: 1 running, 3 paused, 5 off). */
export const HostVmSchema = Type.Object({
  db_id: Type.Integer(),
  name: Type.String(),
  description: Type.String(),
  vcpu_count: Type.Integer(),
  memory_bytes: Type.Integer(),
  state: Type.Integer(),
  graphics: Type.Object({ vnc: Type.Boolean(), spice: Type.Boolean() }),
  /** Corral additions: the daemon's state name and the environment, if the controller made the VM. */
  status: Type.String(),
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
