// Request and response shapes of the daemon's Slicer-compatible API, with the seeds' field names. Each
// schema is the TypeScript type, the request validator and the OpenAPI entry at once.
import { Type, type Static, type TUnsafe } from "@sinclair/typebox";
import { GUEST_USER_PATTERN, HOSTGROUP_PATTERN, HOSTNAME_PATTERN } from "./names.ts";
import { HostIsolationInfoSchema } from "./host-isolation.ts";
import { TemplateInfoSchema } from "./templates-api.ts";
import { HealthFieldsSchema } from "./vm-health.ts";

/** A string limited to some values, as a JSON Schema enum (so errors can list the allowed values). */
export function StringEnum<const T extends readonly string[]>(values: T, options: { description?: string } = {}): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: "string", enum: [...values], ...options });
}

export const ErrorBodySchema = Type.Object({ error: Type.String(), code: Type.String() }, { $id: "ErrorBody" });

export const HostnameParam = Type.String({ pattern: HOSTNAME_PATTERN, maxLength: 63, description: "a hostname (lower-case letters, digits and dashes)" });
export const HostgroupParam = Type.String({ pattern: HOSTGROUP_PATTERN, maxLength: 32, description: "a host group name" });

export const GroupParams = Type.Object({ name: HostgroupParam });
export const GroupNodeParams = Type.Object({ name: HostgroupParam, hostname: HostnameParam });
export const VmParams = Type.Object({ hostname: HostnameParam });

const MAX_USERDATA = 512 * 1024;

/**
 * A sandbox lifetime (Corral's extension beside Slicer's fields): a Go duration such as "30m", or seconds.
 * One JSON Schema type list rather than a union, so a wrong type is reported as "a string or a number".
 */
export const LifetimeField = Type.Unsafe<string | number>({ type: ["string", "number"], description: 'a duration such as "30m", or a number of seconds' });

/** POST /hostgroup/NAME/nodes. Every field is optional; fields the official SDKs send are all accepted. */
export const CreateNodeBodySchema = Type.Object(
  {
    cpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    ram_bytes: Type.Optional(Type.Integer({ minimum: 128 * 1024 * 1024 })),
    ram_gb: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    gpu_count: Type.Optional(Type.Integer({ minimum: 0 })),
    persistent: Type.Optional(Type.Boolean()),
    userdata: Type.Optional(Type.String({ maxLength: MAX_USERDATA })),
    ssh_keys: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 16384 }), { maxItems: 64 })),
    tags: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 256 }), { maxItems: 64 })),
    /** A login user created in the guest, who gets `ssh_keys` (without it, root gets them). */
    import_user: Type.Optional(Type.String({ pattern: "^[a-z_][a-z0-9_-]{0,31}$", description: "a user name (lower-case letters, digits, '_' and '-', at most 32)" })),
    github_user: Type.Optional(Type.String()),
    disk_image: Type.Optional(Type.String()),
    ip: Type.Optional(Type.String()),
    secrets: Type.Optional(Type.Array(Type.String())),
    network: Type.Optional(Type.Object({ allow: Type.Optional(Type.Array(Type.String())), drop: Type.Optional(Type.Array(Type.String())) })),
    /** How long the sandbox lives before the daemon deletes it (default: the host group's `lifetime`). */
    lifetime: Type.Optional(LifetimeField),
  },
  { additionalProperties: false },
);
export type CreateNodeBody = Static<typeof CreateNodeBodySchema>;

/** PATCH /vm/HOST: the VM expires `lifetime` from now (null: never, unless its group has a max_lifetime). */
export const VmPatchSchema = Type.Object(
  { lifetime: Type.Unsafe<string | number | null>({ type: ["string", "number", "null"], description: 'a duration such as "1h", a number of seconds, or null' }) },
  { additionalProperties: false },
);

/** `?wait=agent|userdata&timeout=60s` on create, relaunch and restore. */
export const WaitQuerySchema = Type.Object({
  wait: Type.Optional(StringEnum(["agent", "userdata"])),
  timeout: Type.Optional(Type.String({ description: 'a Go duration such as "60s"' })),
});
export const CreateNodeQuerySchema = WaitQuerySchema;

export const PowerActionSchema = StringEnum(["shutdown", "reboot"]);
export const ShutdownQuerySchema = Type.Object({ action: Type.Optional(PowerActionSchema) });
/** Slicer's TypeScript SDK sends the action in a JSON body, its Go SDK in the query: both are read. */
export const ShutdownBodySchema = Type.Object({ action: Type.Optional(PowerActionSchema) }, { additionalProperties: false });

const Tag = Type.String({ minLength: 1, maxLength: 256 });
const TagList = Type.Array(Tag, { maxItems: 64 });
/** Exactly one of add, remove, replace per request (replace: [] clears). */
export const TagsChangeSchema = Type.Object({ add: Type.Optional(TagList), remove: Type.Optional(TagList), replace: Type.Optional(TagList) }, { additionalProperties: false });
export const TagsSchema = Type.Object({ hostname: Type.String(), tags: Type.Array(Type.String()) });

export const CreatedNodeSchema = Type.Object({
  hostname: Type.String(),
  hostgroup: Type.String(),
  ip: Type.String(),
  created_at: Type.String(),
  arch: Type.String(),
  persistent: Type.Boolean(),
  /** When the sandbox's lifetime ends (RFC 3339); absent: it has none. */
  expires_at: Type.Optional(Type.String()),
});
export type CreatedNode = Static<typeof CreatedNodeSchema>;

export const NodeStatusSchema = Type.Union([Type.Literal("Running"), Type.Literal("Paused"), Type.Literal("Stopped")]);

/** Slicer's node fields, and Corral's `health` beside `status` (see vm-health.ts). */
export const NodeSchema = Type.Object({
  hostname: Type.String(),
  hostgroup: Type.String(),
  ip: Type.String(),
  ram_bytes: Type.Integer(),
  cpus: Type.Integer(),
  created_at: Type.String(),
  arch: Type.String(),
  tags: Type.Array(Type.String()),
  status: NodeStatusSchema,
  persistent: Type.Boolean(),
  last_agent_call: Type.Optional(Type.String()),
  /** When the VM's lifetime ends (RFC 3339); absent: it has none. */
  expires_at: Type.Optional(Type.String()),
  ...HealthFieldsSchema.properties,
});
export type NodeInfo = Static<typeof NodeSchema>;

export const NodeListQuerySchema = Type.Object({
  tag: Type.Optional(Type.String()),
  tag_prefix: Type.Optional(Type.String()),
});

const PolicyListsSchema = Type.Object({ allow: Type.Array(Type.String()), drop: Type.Array(Type.String()) });

/** A VM's NIC as the host sees it (protocol/net.ts NicView). */
export const NicViewSchema = Type.Object({
  mode: StringEnum(["user", "bridge", "isolated"] as const),
  mac: Type.String(),
  address: Type.String(),
  prefix_length: Type.Integer(),
  gateway: Type.String(),
  bridge: Type.Union([Type.String(), Type.Null()]),
  target_dev: Type.Union([Type.String(), Type.Null()]),
});

/**
 * GET /vm/HOST's `network` (protocol/net.ts VmNetworkDescription): Slicer's Go SDK fields (mode,
 * policy_source, host_group, override, effective) exactly, Corral's beside them.
 */
export const VmNetworkSchema = Type.Object({
  mode: StringEnum(["user", "bridge", "isolated"] as const),
  policy_source: StringEnum(["host_group", "override"] as const),
  host_group: PolicyListsSchema,
  override: Type.Optional(Type.Object({ allow: Type.Optional(Type.Array(Type.String())), drop: Type.Optional(Type.Array(Type.String())) })),
  effective: PolicyListsSchema,
  deny_outgoing: Type.Boolean(),
  /** Guest port → host port (TTstack's port_map). */
  port_map: Type.Record(Type.String(), Type.Integer()),
  interface: NicViewSchema,
});

/** A host group's network (GET /hostgroup, GET /info): its mode, whether this daemon could set it up, and why not. */
export const GroupNetworkInfoSchema = Type.Object({
  name: Type.String(),
  mode: StringEnum(["user", "bridge", "isolated"] as const),
  state: StringEnum(["ready", "unavailable"] as const),
  /** Why the group is unavailable (what is missing, what to do); empty when ready. */
  reason: Type.String(),
  bridge: Type.Optional(Type.String()),
  /** Bridge mode: the bridge's address with the subnet's prefix ("192.168.137.1/24"). */
  gateway: Type.Optional(Type.String()),
  /** The addresses handed out: "A-B" (bridge) or the CIDR cut into /30 blocks (isolated). */
  range: Type.Optional(Type.String()),
  free_addresses: Type.Optional(Type.Integer({ minimum: 0 })),
});
export type GroupNetworkInfo = Static<typeof GroupNetworkInfoSchema>;

export const HostGroupSchema = Type.Object({
  name: Type.String(),
  count: Type.Integer(),
  ram_bytes: Type.Integer(),
  cpus: Type.Integer(),
  gpu_count: Type.Integer(),
  arch: Type.String(),
  /** The older document's fields, kept for older clients. */
  ram_gb: Type.Number(),
  vcpu: Type.Integer(),
  /** Corral's: how the group's VMs are networked (Slicer's config `network:`). */
  network: Type.Omit(GroupNetworkInfoSchema, ["name"]),
});
export type HostGroupInfo = Static<typeof HostGroupSchema>;

export const DeletedNodeSchema = Type.Object({ message: Type.String(), disk_removed: Type.String() });

export const VmHealthSchema = Type.Object({
  hostname: Type.String(),
  agent_uptime: Type.Integer({ description: "nanoseconds" }),
  agent_version: Type.String(),
  system_uptime: Type.Integer({ description: "nanoseconds" }),
  userdata_ran: Type.Boolean(),
  userdata_exit_code: Type.Optional(Type.Integer()),
  ip: Type.String(),
});

export const LogsQuerySchema = Type.Object({ lines: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })) });
export const LogsSchema = Type.Object({ hostname: Type.String(), lines: Type.Integer(), content: Type.String() });

const MAX_ID = 4294967294;

/** GET /vm/HOST/shell's query (also the controller's, which passes it on). */
export const ShellQuerySchema = Type.Object({
  uid: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_ID })),
  gid: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_ID })),
  shell: Type.Optional(Type.String({ maxLength: 4096 })),
  cwd: Type.Optional(Type.String({ maxLength: 4096 })),
});
export type ShellQuery = Static<typeof ShellQuerySchema>;

const StringOrList = Type.Union([Type.String(), Type.Array(Type.String())]);

export const ExecQuerySchema = Type.Object({
  cmd: Type.Optional(Type.String()),
  args: Type.Optional(StringOrList),
  env: Type.Optional(StringOrList),
  cwd: Type.Optional(Type.String()),
  uid: Type.Optional(Type.Integer({ minimum: 0, maximum: 4294967294 })),
  gid: Type.Optional(Type.Integer({ minimum: 0, maximum: 4294967294 })),
  user: Type.Optional(
    Type.String({ pattern: GUEST_USER_PATTERN, description: "a user of the guest by name (e.g. the image's default user); its uid and gid unless uid/gid are given" }),
  ),
  shell: Type.Optional(Type.String()),
  stdin: Type.Optional(Type.Boolean()),
  stdout: Type.Optional(Type.Boolean()),
  stderr: Type.Optional(Type.Boolean()),
  stdio: Type.Optional(StringEnum(["text", "base64"])),
  buffered: Type.Optional(Type.Boolean()),
  permissions: Type.Optional(Type.String()),
});
export type ExecQuery = Static<typeof ExecQuerySchema>;

export const BufferedExecSchema = Type.Object({
  stdout: Type.String(),
  stderr: Type.String(),
  exit_code: Type.Integer(),
  encoding: Type.Optional(Type.Literal("base64")),
  pid: Type.Optional(Type.Integer()),
  started_at: Type.Optional(Type.String()),
  ended_at: Type.Optional(Type.String()),
  signal: Type.Optional(Type.String()),
  error: Type.Optional(Type.String()),
  truncated: Type.Optional(Type.Boolean()),
});

/** The host's memory and disk as admission control sees them (GET /info `pressure`; see docs/api.md). */
export const HostPressureSchema = Type.Object({
  memory_available_bytes: Type.Integer({ description: "MemAvailable of /proc/meminfo" }),
  memory_reserve_bytes: Type.Integer({ description: "kept for the host (admission.memory_reserve_mb)" }),
  memory_starting_bytes: Type.Integer({ description: "held for VMs admitted and still starting" }),
  memory_pressure: Type.Boolean({ description: "MemAvailable is below the reserve" }),
  state_dir_free_bytes: Type.Integer(),
  min_free_disk_bytes: Type.Integer({ description: "what creates need free (admission.min_free_disk_mb)" }),
  disk_pressure: Type.Boolean({ description: "the state directory has less free space than creates need" }),
});
export type HostPressure = Static<typeof HostPressureSchema>;

export const InfoSchema = Type.Object({
  version: Type.String(),
  git_commit: Type.String(),
  platform: Type.String(),
  arch: Type.String(),
  accel: Type.String(),
  accel_reason: Type.String(),
  accel_decided_at: Type.String(),
  images: Type.Array(Type.Object({ name: Type.String(), version: Type.String(), kernel_release: Type.String(), created_at: Type.String() })),
  templates: Type.Array(TemplateInfoSchema),
  host_isolation: HostIsolationInfoSchema,
  /** Corral's: each host group's network (mode, set up or not and why). */
  network: Type.Object({
    groups: Type.Array(GroupNetworkInfoSchema),
    /** This daemon's nftables tables for bridge and isolated VMs (none when every group is user mode). */
    tables: Type.Array(Type.String()),
    /** The host forwards IPv4 (bridge and isolated modes turn it on). */
    ip_forward: Type.Boolean(),
    /** TAPs use vhost-net. */
    vhost: Type.Boolean(),
  }),
  pressure: HostPressureSchema,
});

/** Slicer reports the machine architecture as x86_64 in host groups and nodes. */
export const SLICER_ARCH = "x86_64";

const Num = Type.Number();
export const SnapshotSchema = Type.Object({
  hostname: Type.String(),
  arch: Type.String(),
  timestamp: Type.String(),
  uptime: Type.String({ description: "a Go duration" }),
  totalCpus: Type.Integer(),
  totalMemory: Num,
  memoryUsed: Num,
  memoryAvailable: Num,
  memoryUsedPercent: Num,
  loadAvg1: Num,
  loadAvg5: Num,
  loadAvg15: Num,
  diskReadTotal: Num,
  diskWriteTotal: Num,
  networkReadTotal: Num,
  networkWriteTotal: Num,
  diskIOInflight: Num,
  openConnections: Num,
  openFiles: Num,
  entropy: Num,
  diskSpaceTotal: Num,
  diskSpaceUsed: Num,
  diskSpaceFree: Num,
  diskSpaceUsedPercent: Num,
});

/** One VM's stats; `snapshot` is null (and `error` says why) when its agent cannot answer. */
export const NodeStatSchema = Type.Object({
  hostname: Type.String(),
  ip: Type.String(),
  created_at: Type.String(),
  snapshot: Type.Union([SnapshotSchema, Type.Null()]),
  error: Type.Optional(Type.String()),
});
export type NodeStat = Static<typeof NodeStatSchema>;
