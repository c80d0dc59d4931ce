// The daemon's YAML configuration, in Slicer's shape (a top-level `config:`). Parsed once, defaults applied
// in one place, then frozen. Unknown keys and wrong types are errors that name their YAML path.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { Type, type Static } from "@sinclair/typebox";
import { parse as parseYaml, YAMLParseError } from "yaml";
import type { AccelMode } from "../engine/index.ts";
import { parseHostAccess, type HostAccess } from "../net/index.ts";
import { USER_GROUP_NETWORK, type GroupNetwork } from "../net/network-config.ts";
import {
  GroupNetworkSchema,
  NETWORK_DAEMON_FIELDS,
  parseDnsServers,
  parseGroupNetwork,
  parsePortRange,
  settleGroupNetworks,
  type PortRange,
  type VhostSetting,
} from "./config-network.ts";
import { quote } from "../protocol/errors.ts";
import { parseLifetime } from "../protocol/lifetime.ts";
import { parseDuration } from "../protocol/duration.ts";
import { CorralError } from "../protocol/errors.ts";
import { HOSTGROUP_PATTERN, IMAGE_PATTERN } from "../protocol/names.ts";
import { describeSchemaErrors } from "../util/schema-errors.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
export const MIN_RAM_BYTES = 128 * MiB;
export const MAX_VCPU = 64;

const HostGroupSchema = Type.Object(
  {
    name: Type.String({ pattern: HOSTGROUP_PATTERN, description: "a lower-case letter, then letters, digits and dashes (at most 32)" }),
    count: Type.Optional(Type.Integer({ minimum: 0, maximum: 256 })),
    vcpu: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_VCPU })),
    ram_gb: Type.Optional(Type.Number({ minimum: 0.125, maximum: 1024 })),
    ram_mb: Type.Optional(Type.Integer({ minimum: 128, maximum: 1024 * 1024 })),
    ram_bytes: Type.Optional(Type.Integer({ minimum: MIN_RAM_BYTES })),
    persistent: Type.Optional(Type.Boolean()),
    userdata: Type.Optional(Type.String()),
    userdata_file: Type.Optional(Type.String({ minLength: 1 })),
    image: Type.Optional(Type.String({ pattern: IMAGE_PATTERN, description: "an image name (lower-case letters, digits, '.', '-', '_')" })),
    ssh_keys: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    template: Type.Optional(Type.Boolean({ description: "create sandboxes by restoring a template snapshot (default true)" })),
    warm_pool: Type.Optional(Type.Integer({ minimum: 0, maximum: 32, description: "clones kept restored and idle, ready to be handed out (default 0)" })),
    lifetime: Type.Optional(Type.Union([Type.String(), Type.Number()], { description: 'a duration such as "30m", or seconds' })),
    max_lifetime: Type.Optional(Type.Union([Type.String(), Type.Number()], { description: 'a duration such as "24h", or seconds' })),
    max_vms: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000, description: "VMs of the group that may run or be starting at once (default: no limit)" })),
    network: Type.Optional(GroupNetworkSchema),
    dns_servers: Type.Optional(Type.Array(Type.String(), { maxItems: 8, description: "what the guests use as resolvers (Slicer's field)" })),
    // Slicer's CNI networks: read only to refuse them with a sentence.
    network_name: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

const DurationText = Type.String({ minLength: 1, description: 'a duration such as "10s" or "500ms"' });

const ConfigFileSchema = Type.Object(
  {
    config: Type.Object(
      {
        api: Type.Optional(
          Type.Object(
            {
              bind_address: Type.Optional(Type.String({ minLength: 1 })),
              port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
              socket: Type.Optional(Type.String({ minLength: 1 })),
              auth: Type.Optional(Type.Object({ enabled: Type.Optional(Type.Boolean()) }, { additionalProperties: false })),
            },
            { additionalProperties: false },
          ),
        ),
        accel: Type.Optional(Type.Union([Type.Literal("auto"), Type.Literal("kvm"), Type.Literal("tcg")])),
        insecure_registry: Type.Optional(Type.Boolean({ description: "image pulls may use plain HTTP and unverified TLS (Slicer's field; default false)" })),
        ksm: Type.Optional(Type.Boolean({ description: "merge identical memory pages across this host's VMs with the kernel's KSM (default false)" })),
        network: Type.Optional(
          Type.Object(
            {
              host_isolation: Type.Optional(Type.Boolean({ description: "wall guests off from this host's services (default true)" })),
              host_access: Type.Optional(Type.Array(Type.String(), { maxItems: 256, description: "host services guests may reach through the wall" })),
              ...NETWORK_DAEMON_FIELDS,
            },
            { additionalProperties: false },
          ),
        ),
        admission: Type.Optional(
          Type.Object(
            {
              memory_reserve_mb: Type.Optional(Type.Integer({ minimum: 0, maximum: 64 * 1024 * 1024, description: "host memory (MiB) creates may not take (default 512)" })),
              min_free_disk_mb: Type.Optional(
                Type.Integer({ minimum: 0, maximum: 64 * 1024 * 1024, description: "free space (MiB) the state directory must keep for creates (default 1024)" }),
              ),
            },
            { additionalProperties: false },
          ),
        ),
        health_check: Type.Optional(
          Type.Object(
            { interval: Type.Optional(DurationText), timeout: Type.Optional(DurationText), failures: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })) },
            { additionalProperties: false },
          ),
        ),
        host_groups: Type.Optional(Type.Array(HostGroupSchema)),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

type ConfigFile = Static<typeof ConfigFileSchema>;

export interface HostGroupConfig {
  readonly name: string;
  /** Services: VMs the daemon keeps running from start-up. 0 makes a sandbox-only group. */
  readonly count: number;
  /** Per-VM default and maximum. */
  readonly vcpu: number;
  readonly ramBytes: number;
  readonly persistent: boolean;
  readonly userdata: string | undefined;
  readonly image: string;
  readonly sshKeys: readonly string[];
  /** Sandboxes of the group's default size are clones of a template snapshot (else each boots cold). */
  readonly template: boolean;
  /** How many clones are kept restored and idle, so that a create only has to give one its identity. */
  readonly warmPool: number;
  /** How long a sandbox lives when its create does not say (ms); null: until deleted (or `maxLifetimeMs`). */
  readonly lifetimeMs: number | null;
  /** The longest a sandbox may live, from its creation, whatever its create or a later extension asks (ms). */
  readonly maxLifetimeMs: number | null;
  /** VMs of the group that may hold a QEMU process or be on their way to one; undefined: no limit. */
  readonly maxVms: number | undefined;
  /** How the group's VMs are networked (Slicer's `network:`); user mode when absent. */
  readonly network: GroupNetwork;
  /** Slicer's `dns_servers`: what the guests are told; empty: the mode's default (see src/net). */
  readonly dnsServers: readonly string[];
}

/** What the daemon keeps for the host itself: creates that would eat into it are refused (see admission.ts). */
export interface AdmissionConfig {
  /** Bytes of host memory (of MemAvailable) no VM may be admitted into. */
  readonly memoryReserveBytes: number;
  /** Bytes the state directory's filesystem must have free for a create to start. */
  readonly minFreeDiskBytes: number;
}

/** The periodic liveness check of each running VM's agent (see liveness.ts). */
export interface HealthCheckConfig {
  /** Between two checks of one VM; 0 turns the checks off. */
  readonly intervalMs: number;
  /** How long one check may take. */
  readonly timeoutMs: number;
  /** Missed checks in a row after which the VM is `unresponsive`. */
  readonly failures: number;
}

export const DEFAULT_ADMISSION: AdmissionConfig = Object.freeze({ memoryReserveBytes: 512 * MiB, minFreeDiskBytes: 1024 * MiB });
export const DEFAULT_HEALTH_CHECK: HealthCheckConfig = Object.freeze({ intervalMs: 10_000, timeoutMs: 5_000, failures: 2 });

export interface DaemonConfig {
  readonly api: {
    readonly bindAddress: string;
    readonly port: number;
    readonly socket: string | undefined;
    readonly authEnabled: boolean;
  };
  readonly accel: AccelMode;
  /** Slicer's `insecure_registry`: every pull may use plain HTTP and unverified TLS, as if it asked `insecure`. */
  readonly insecureRegistry: boolean;
  /**
   * Identical memory pages of this host's VMs are merged by the kernel (KSM; src/engine/qemu/memory-merge.ts):
   * less memory per VM, for ksmd's CPU and a side channel between guests that share a page.
   */
  readonly ksm: boolean;
  readonly network: {
    /** Guests are walled off from this host's addresses (src/net/host-isolation.ts); false: on purpose, not. */
    readonly hostIsolation: boolean;
    /** Host services guests may reach through the wall. */
    readonly hostAccess: readonly HostAccess[];
    /** Host ports DNAT'd to TAP-mode VMs' port maps (TTstack's `port_map`) are taken from here. */
    readonly portRange: PortRange;
    /** vhost-net for TAP NICs; auto: on when /dev/vhost-net opens. */
    readonly vhost: VhostSetting;
  };
  readonly admission: AdmissionConfig;
  readonly healthCheck: HealthCheckConfig;
  readonly hostGroups: readonly HostGroupConfig[];
}

export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(source: string, problems: readonly string[]) {
    super(`Invalid configuration in ${source}:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

/** The group a daemon without host groups in its configuration serves; it keeps two clones warm. */
export const DEFAULT_GROUP = { name: "sbox", vcpu: 2, ramBytes: 2 * GiB, warmPool: 2 } as const;
/** The image of a host group without `image:`: Debian with systemd, what Slicer's users expect of a guest. */
export const DEFAULT_IMAGE = "debian";

/**
 * The host group of VMs made through TTstack's agent API (`POST /api/vms`, what a fleet controller calls).
 * Its size is per request; a configured group of this name sets its image and template use.
 */
export const TTSTACK_GROUP_NAME = "ttstack";

/** Groups made up by the daemon (ttstackGroup's when none is configured): no YAML path names them. */
const BUILT_IN_GROUPS = new WeakSet<HostGroupConfig>();

export function isBuiltInGroup(group: HostGroupConfig): boolean {
  return BUILT_IN_GROUPS.has(group);
}

export function ttstackGroup(config: DaemonConfig): HostGroupConfig {
  const configured = config.hostGroups.find((g) => g.name === TTSTACK_GROUP_NAME);
  if (configured) return configured;
  const group: HostGroupConfig = Object.freeze({
    name: TTSTACK_GROUP_NAME,
    count: 0,
    vcpu: 2,
    ramBytes: 1024 * MiB,
    persistent: true,
    userdata: undefined,
    image: DEFAULT_IMAGE,
    sshKeys: Object.freeze([]),
    // Sizes and port forwards differ per VM: boot cold.
    template: false,
    warmPool: 0,
    // The controller decides when its VMs go.
    lifetimeMs: null,
    maxLifetimeMs: null,
    maxVms: undefined,
    network: USER_GROUP_NETWORK,
    dnsServers: Object.freeze([]),
  });
  BUILT_IN_GROUPS.add(group);
  return group;
}

export const DEFAULT_CONFIG_YAML = `config:
  api:
    bind_address: 127.0.0.1
    port: 8080
    auth:
      enabled: false
  accel: auto
  host_groups:
    - name: ${DEFAULT_GROUP.name}
      count: 0
      vcpu: ${DEFAULT_GROUP.vcpu}
      ram_gb: ${DEFAULT_GROUP.ramBytes / GiB}
      warm_pool: ${DEFAULT_GROUP.warmPool}
`;

/** Parses YAML text; `source` names the file in error messages, `baseDir` resolves relative file names. */
export function parseDaemonConfig(text: string, source: string, baseDir = process.cwd()): DaemonConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    const detail = err instanceof YAMLParseError ? err.message.split("\n")[0] : String(err);
    throw new ConfigError(source, [`not valid YAML: ${detail}`]);
  }
  if (raw === null || raw === undefined) raw = { config: {} };
  // "config:" with nothing under it means the defaults, as an empty file does.
  if (typeof raw === "object" && raw !== null && "config" in raw && (raw as { config: unknown }).config === null) raw = { ...raw, config: {} };
  const problems = describeSchemaErrors(ConfigFileSchema, raw);
  if (problems.length > 0) throw new ConfigError(source, problems);
  return normalize(raw as ConfigFile, source, baseDir);
}

export function loadDaemonConfig(path: string | undefined): DaemonConfig {
  if (path === undefined) return parseDaemonConfig(DEFAULT_CONFIG_YAML, "the built-in defaults");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(path, [`cannot read the file: ${(err as Error).message}`]);
  }
  return parseDaemonConfig(text, path, dirname(resolve(path)));
}

function ramOf(group: Static<typeof HostGroupSchema>, path: string, problems: string[]): number {
  const given = (["ram_gb", "ram_mb", "ram_bytes"] as const).filter((k) => group[k] !== undefined);
  if (given.length > 1) problems.push(`${path} sets ${given.join(" and ")}: give the memory size once`);
  if (group.ram_bytes !== undefined) return group.ram_bytes;
  if (group.ram_mb !== undefined) return group.ram_mb * MiB;
  if (group.ram_gb !== undefined) return Math.round(group.ram_gb * GiB);
  return DEFAULT_GROUP.ramBytes;
}

/** A group's lifetime setting in milliseconds (null when absent); a bad value is a problem naming its path. */
function lifetimeOf(value: string | number | undefined, path: string, problems: string[]): number | null {
  if (value === undefined) return null;
  try {
    return parseLifetime(value, path);
  } catch (err) {
    problems.push((err as Error).message);
    return null;
  }
}

function normalize(file: ConfigFile, source: string, baseDir: string): DaemonConfig {
  const problems: string[] = [];
  const rawGroups = file.config.host_groups ?? [{ name: DEFAULT_GROUP.name, count: 0, warm_pool: DEFAULT_GROUP.warmPool }];
  const seen = new Set<string>();
  const hostGroups = rawGroups.map((group, index): HostGroupConfig => {
    const path = `config.host_groups[${index}]`;
    if (seen.has(group.name)) problems.push(`${path}.name repeats the host group name "${group.name}"`);
    seen.add(group.name);
    if (group.userdata !== undefined && group.userdata_file !== undefined) {
      problems.push(`${path} sets both userdata and userdata_file: give one`);
    }
    let userdata = group.userdata;
    if (group.userdata_file !== undefined) {
      try {
        userdata = readFileSync(resolve(baseDir, group.userdata_file), "utf8");
      } catch (err) {
        problems.push(`${path}.userdata_file cannot be read: ${(err as Error).message}`);
      }
    }
    const lifetimeMs = lifetimeOf(group.lifetime, `${path}.lifetime`, problems);
    const maxLifetimeMs = lifetimeOf(group.max_lifetime, `${path}.max_lifetime`, problems);
    if (lifetimeMs !== null && maxLifetimeMs !== null && lifetimeMs > maxLifetimeMs) {
      problems.push(`${path}.lifetime ${quote(group.lifetime)} is longer than its max_lifetime ${quote(group.max_lifetime)}`);
    }
    return Object.freeze({
      name: group.name,
      count: group.count ?? 0,
      vcpu: group.vcpu ?? DEFAULT_GROUP.vcpu,
      ramBytes: ramOf(group, path, problems),
      // Services keep their disk unless told otherwise; sandboxes decide per request.
      persistent: group.persistent ?? (group.count ?? 0) > 0,
      userdata,
      image: group.image ?? DEFAULT_IMAGE,
      sshKeys: Object.freeze([...(group.ssh_keys ?? [])]),
      template: group.template ?? true,
      warmPool: group.template === false ? 0 : (group.warm_pool ?? 0),
      lifetimeMs,
      maxLifetimeMs,
      maxVms: group.max_vms,
      network: parseGroupNetwork(group.network, group.name, index, problems),
      dnsServers: parseDnsServers(group.dns_servers, index, problems),
    });
  });
  for (const [index, group] of rawGroups.entries()) {
    if (group.network_name !== undefined) {
      problems.push(
        `config.host_groups[${index}].network_name ${quote(group.network_name)} names a CNI network, which Corral does not support: give a network: section with mode "user", "bridge" or "isolated"`,
      );
    }
  }
  const networks = settleGroupNetworks(
    hostGroups.map((g, i) => ({ name: g.name, network: g.network, raw: rawGroups[i]?.network })),
    problems,
  );
  const settledGroups = hostGroups.map((g, i) => (networks[i] === g.network ? g : Object.freeze({ ...g, network: networks[i]! })));
  for (const [index, group] of hostGroups.entries()) {
    if (group.maxVms !== undefined && group.maxVms < group.count) {
      problems.push(`config.host_groups[${index}].max_vms must be at least its count (${group.count} services), got ${group.maxVms}`);
    }
  }
  const healthCheck = healthCheckOf(file.config.health_check, problems);
  const network = file.config.network ?? {};
  const hostAccess = (network.host_access ?? []).flatMap((entry, index): HostAccess[] => {
    const parsed = parseHostAccess(entry);
    if ("problem" in parsed) problems.push(`config.network.host_access[${index}] ${parsed.problem}`);
    return "problem" in parsed ? [] : [Object.freeze(parsed)];
  });
  const portRange = parsePortRange(network.port_range, problems);
  if (network.host_isolation === false && hostAccess.length > 0) {
    problems.push("config.network.host_access has no effect with config.network.host_isolation: false (there is no wall to pass through): remove one of them");
  }
  if (problems.length > 0) throw new ConfigError(source, problems);
  const api = file.config.api ?? {};
  return Object.freeze({
    api: Object.freeze({
      bindAddress: api.bind_address ?? "127.0.0.1",
      port: api.port ?? 8080,
      socket: api.socket,
      authEnabled: api.auth?.enabled ?? false,
    }),
    accel: file.config.accel ?? "auto",
    insecureRegistry: file.config.insecure_registry ?? false,
    ksm: file.config.ksm ?? false,
    network: Object.freeze({ hostIsolation: network.host_isolation ?? true, hostAccess: Object.freeze(hostAccess), portRange, vhost: network.vhost ?? "auto" }),
    admission: Object.freeze({
      memoryReserveBytes: (file.config.admission?.memory_reserve_mb ?? DEFAULT_ADMISSION.memoryReserveBytes / MiB) * MiB,
      minFreeDiskBytes: (file.config.admission?.min_free_disk_mb ?? DEFAULT_ADMISSION.minFreeDiskBytes / MiB) * MiB,
    }),
    healthCheck,
    hostGroups: Object.freeze(settledGroups),
  });
}

function healthCheckOf(raw: ConfigFile["config"]["health_check"], problems: string[]): HealthCheckConfig {
  const duration = (key: "interval" | "timeout", fallback: number): number => {
    const text = raw?.[key];
    if (text === undefined) return fallback;
    try {
      return parseDuration(text, `config.health_check.${key}`);
    } catch (err) {
      problems.push(err instanceof CorralError ? err.message.replace(/^Invalid /, "") : String(err));
      return fallback;
    }
  };
  const intervalMs = duration("interval", DEFAULT_HEALTH_CHECK.intervalMs);
  const timeoutMs = duration("timeout", DEFAULT_HEALTH_CHECK.timeoutMs);
  if (intervalMs > 0 && timeoutMs === 0) problems.push("config.health_check.timeout must be more than 0s");
  if (intervalMs > 0 && timeoutMs > intervalMs) problems.push(`config.health_check.timeout (${raw?.timeout}) must not be longer than its interval (${raw?.interval ?? "10s"})`);
  return Object.freeze({ intervalMs, timeoutMs, failures: raw?.failures ?? DEFAULT_HEALTH_CHECK.failures });
}
