// The networking part of the daemon's YAML: a host group's `network:` (Slicer's shape: bridge and isolated
// modes, plus Corral's user mode) and `dns_servers`, the daemon-wide `config.network.port_range` and `vhost`,
// and the checks across groups (no two groups may share addresses). Every problem names its YAML path.
import { createHash } from "node:crypto";
import { Type, type Static } from "@sinclair/typebox";
import {
  cidrContains,
  cidrsOverlap,
  formatCidr,
  formatIpv4,
  isProblem,
  networkOf,
  parseAddressWithPrefix,
  parseCidr,
  parseIpv4,
  parseRange,
  rangeOf,
  rangesOverlap,
  sizeOf,
  type AddressRange,
  type Cidr,
} from "../net/cidr.ts";
import { USER_GROUP_NETWORK, type EgressPolicy, type GroupNetwork } from "../net/network-config.ts";
import { EMPTY_POLICY, parseEgressList } from "../net/policy.ts";
import { quote } from "../protocol/errors.ts";

/** `network:` of a host group as written. `mode` is any string so an unsupported one gets a sentence, not a schema error. */
export const GroupNetworkSchema = Type.Object(
  {
    mode: Type.Optional(Type.String({ description: "user, bridge or isolated (bridge when absent, as in Slicer)" })),
    bridge: Type.Optional(Type.String({ minLength: 1 })),
    tap_prefix: Type.Optional(Type.String({ minLength: 1 })),
    gateway: Type.Optional(Type.String({ minLength: 1 })),
    range: Type.Optional(Type.String({ minLength: 1 })),
    addresses: Type.Optional(Type.Array(Type.String(), { maxItems: 65536 })),
    drop: Type.Optional(Type.Array(Type.String(), { maxItems: 256 })),
    allow: Type.Optional(Type.Array(Type.String(), { maxItems: 256 })),
    // Slicer's macvtap parent: read only to refuse the mode with a sentence.
    parent: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
export type RawGroupNetwork = Static<typeof GroupNetworkSchema>;

/** Daemon-wide network settings added by issue 14 (beside host_isolation and host_access). */
export const NETWORK_DAEMON_FIELDS = {
  port_range: Type.Optional(Type.String({ minLength: 1, description: 'host ports for TTstack port maps in TAP modes, "FIRST-LAST" (default "20000-29999")' })),
  vhost: Type.Optional(
    Type.Union([Type.Literal("auto"), Type.Literal("on"), Type.Literal("off")], { description: "vhost-net for TAP NICs: auto (when /dev/vhost-net opens), on or off" }),
  ),
};

export interface PortRange {
  readonly first: number;
  readonly last: number;
}

export type VhostSetting = "auto" | "on" | "off";

/** TTstack's host port base: port maps are DNAT'd from 20000 up, as its agent does. */
export const DEFAULT_PORT_RANGE: PortRange = Object.freeze({ first: 20000, last: 29999 });

const MODES = ["user", "bridge", "isolated"] as const;
/** Interface names: at most 15 characters (IFNAMSIZ - 1), no "/", no whitespace, not "." or "..". */
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const TAP_PREFIX = /^[A-Za-z][A-Za-z0-9_.-]*$/;
export const MAX_TAP_PREFIX = 10;
/** Where isolated ranges are derived from when `range:` is not given (link-local, as Slicer). */
const LINK_LOCAL: Cidr = Object.freeze({ network: parseIpv4("169.254.0.0") as number, prefixLength: 16 });
/** The /22 holding 169.254.169.254 (clouds' metadata service) is never handed out by default. */
const METADATA_BLOCK: Cidr = Object.freeze({ network: parseIpv4("169.254.168.0") as number, prefixLength: 22 });
const DERIVED_PREFIX = 22;

/** The bridge a bridge-mode group gets without `bridge:`: "br<name>0" (slicer new's default), cut to 15. */
export function defaultBridgeName(groupName: string): string {
  return `br${groupName.slice(0, 12)}0`;
}

/**
 * The tap prefix of a group without `tap_prefix:`. The daemon replaces it with "c<tag4>-<index>-" (its own
 * tag, so two daemons on one host never share TAP names); this tag-less form is what config alone can say.
 */
export function defaultTapPrefix(groupIndex: number): string {
  return `c-${groupIndex}-`;
}

/** The `network:` of one group; problems are pushed with their paths. Isolated groups without `range:` get a placeholder, see deriveIsolatedRanges. */
export function parseGroupNetwork(raw: RawGroupNetwork | undefined, groupName: string, groupIndex: number, problems: string[]): GroupNetwork {
  if (raw === undefined) return USER_GROUP_NETWORK;
  const path = `config.host_groups[${groupIndex}].network`;
  const mode = raw.mode ?? "bridge";
  if (!(MODES as readonly string[]).includes(mode)) {
    const hint = mode === "macvtap" ? " (Slicer's macvtap mode)" : mode === "nat" ? " (Slicer for Mac's mode)" : "";
    problems.push(`${path}.mode ${quote(mode)} is not supported${hint}: use "user", "bridge" or "isolated"`);
    return USER_GROUP_NETWORK;
  }
  const onlyFor = (keys: readonly (keyof RawGroupNetwork)[], modes: string): void => {
    for (const key of keys) {
      if (raw[key] !== undefined) problems.push(`${path}.${key} is only for ${modes} (mode is ${quote(mode)})`);
    }
  };
  if (raw.parent !== undefined) problems.push(`${path}.parent is only for Slicer's macvtap mode, which Corral does not support: remove it`);
  if (mode === "user") {
    onlyFor(["bridge", "tap_prefix", "gateway", "addresses"], "bridge mode");
    onlyFor(["range", "drop", "allow"], "bridge or isolated mode");
    return USER_GROUP_NETWORK;
  }
  const policy = policyOf(raw, path, problems);
  if (mode === "isolated") {
    onlyFor(["bridge", "tap_prefix", "gateway", "addresses"], "bridge mode");
    return isolatedOf(raw.range, path, policy, problems);
  }
  return bridgeOf(raw, groupName, groupIndex, path, policy, problems);
}

function policyOf(raw: RawGroupNetwork, path: string, problems: string[]): EgressPolicy {
  const list = (key: "allow" | "drop") => {
    const parsed = parseEgressList(raw[key] ?? [], `${path}.${key}`);
    if (isProblem(parsed)) {
      problems.push(parsed.problem);
      return [];
    }
    return parsed;
  };
  const allow = list("allow");
  const drop = list("drop");
  return allow.length === 0 && drop.length === 0 ? EMPTY_POLICY : Object.freeze({ allow: Object.freeze(allow), drop: Object.freeze(drop) });
}

/** A placeholder range for an isolated group whose range is derived later (never seen outside this module). */
const UNDERIVED: Cidr = Object.freeze({ network: 0, prefixLength: DERIVED_PREFIX });

function isolatedOf(text: string | undefined, path: string, policy: EgressPolicy, problems: string[]): GroupNetwork {
  if (text === undefined) return Object.freeze({ mode: "isolated", range: UNDERIVED, rangeDerived: true, policy });
  let range: Cidr = UNDERIVED;
  if (/^[^/]*-/.test(text)) {
    problems.push(`${path}.range ${quote(text)} must be a CIDR in isolated mode, e.g. "169.254.100.0/22" (each VM takes a /30 block of it)`);
  } else {
    const parsed = parseCidr(text);
    if (isProblem(parsed)) problems.push(`${path}.range ${parsed.problem}`);
    else if (parsed.prefixLength > 30) problems.push(`${path}.range ${quote(text)} must be at least a /30 (one VM)`);
    else range = Object.freeze(parsed);
  }
  return Object.freeze({ mode: "isolated", range, rangeDerived: false, policy });
}

function bridgeOf(raw: RawGroupNetwork, groupName: string, groupIndex: number, path: string, policy: EgressPolicy, problems: string[]): GroupNetwork {
  const bridge = raw.bridge ?? defaultBridgeName(groupName);
  if (!IFNAME.test(bridge) || bridge === "." || bridge === "..") {
    problems.push(`${path}.bridge ${quote(bridge)} is not an interface name: at most 15 letters, digits, ".", "-" or "_"`);
  }
  const tapPrefix = raw.tap_prefix ?? defaultTapPrefix(groupIndex);
  if (raw.tap_prefix !== undefined) {
    if (raw.tap_prefix.length > MAX_TAP_PREFIX) {
      problems.push(`${path}.tap_prefix ${quote(raw.tap_prefix)} is too long: at most ${MAX_TAP_PREFIX} characters (TAP names are at most 15, with up to 5 digits)`);
    } else if (!TAP_PREFIX.test(raw.tap_prefix)) {
      problems.push(`${path}.tap_prefix ${quote(raw.tap_prefix)} must start with a letter and hold only letters, digits, ".", "-" or "_"`);
    } else if (/\d$/.test(raw.tap_prefix)) {
      problems.push(`${path}.tap_prefix ${quote(raw.tap_prefix)} must not end in a digit (the device number follows it), e.g. ${quote(`${raw.tap_prefix}-`)}`);
    }
  }
  const placeholder = Object.freeze({
    mode: "bridge" as const,
    bridge,
    tapPrefix,
    tapPrefixDerived: raw.tap_prefix === undefined,
    gateway: Object.freeze({ address: 0, prefixLength: 32 }),
    range: undefined,
    addresses: Object.freeze([]),
    policy,
  });
  if (raw.gateway === undefined) {
    problems.push(`${path}.gateway is required in bridge mode (Slicer's default mode): the bridge's address and the VMs' subnet, e.g. "192.168.137.1/24"`);
    return placeholder;
  }
  const gateway = parseAddressWithPrefix(raw.gateway);
  if (isProblem(gateway)) {
    problems.push(`${path}.gateway ${gateway.problem}`);
    return placeholder;
  }
  const subnet: Cidr = { network: networkOf(gateway.address, gateway.prefixLength), prefixLength: gateway.prefixLength };
  const broadcast = rangeOf(subnet).last;
  const example = formatIpv4(subnet.network + 1);
  if (gateway.prefixLength > 30) {
    problems.push(`${path}.gateway ${quote(raw.gateway)} leaves no address for a VM: give at most a /30, e.g. "${example}/24"`);
    return placeholder;
  }
  if (gateway.address === subnet.network) {
    problems.push(`${path}.gateway ${quote(raw.gateway)} is the subnet's network address: give the bridge's own address, e.g. "${example}/${subnet.prefixLength}"`);
  } else if (gateway.address === broadcast) {
    problems.push(`${path}.gateway ${quote(raw.gateway)} is the subnet's broadcast address: give the bridge's own address, e.g. "${example}/${subnet.prefixLength}"`);
  }
  const subnetText = quote(formatCidr(subnet));
  const usable = (value: number): "network" | "broadcast" | "gateway" | "outside" | undefined =>
    !cidrContains(subnet, value) ? "outside" : value === subnet.network ? "network" : value === broadcast ? "broadcast" : value === gateway.address ? "gateway" : undefined;
  const flaw = (what: ReturnType<typeof usable>): string =>
    what === "outside" ? `is outside the gateway's subnet ${subnetText}` : what === "gateway" ? "is the gateway's own address" : `is the subnet's ${what} address`;

  let range: AddressRange | undefined;
  if (raw.range !== undefined) {
    const parsed = parseRange(raw.range);
    if (isProblem(parsed)) problems.push(`${path}.range ${parsed.problem}`);
    else if (!cidrContains(subnet, parsed.first) || !cidrContains(subnet, parsed.last))
      problems.push(`${path}.range ${quote(raw.range)} is outside the gateway's subnet ${subnetText}`);
    else if (parsed.first === subnet.network || parsed.last === broadcast) problems.push(`${path}.range ${quote(raw.range)} includes the subnet's network or broadcast address`);
    else if (parsed.first === gateway.address && parsed.last === gateway.address) problems.push(`${path}.range ${quote(raw.range)} holds only the gateway's own address`);
    else range = Object.freeze(parsed);
  }
  const addresses: number[] = [];
  for (const [index, text] of (raw.addresses ?? []).entries()) {
    const at = `${path}.addresses[${index}] ${quote(text)}`;
    const parsed = text.includes("/")
      ? parseAddressWithPrefix(text)
      : parseIpv4(text) !== undefined
        ? { address: parseIpv4(text) as number, prefixLength: subnet.prefixLength }
        : { problem: 'is not an IPv4 address, e.g. "192.168.137.2/24"' };
    if (isProblem(parsed)) {
      problems.push(parsed.problem.startsWith('"') ? `${path}.addresses[${index}] ${parsed.problem}` : `${at} ${parsed.problem}`);
      continue;
    }
    const what = usable(parsed.address);
    if (what !== undefined) problems.push(`${at} ${flaw(what)}`);
    else if (parsed.prefixLength !== subnet.prefixLength)
      problems.push(`${at} has prefix length ${parsed.prefixLength}, the gateway's subnet ${subnetText} has ${subnet.prefixLength}`);
    else if (addresses.includes(parsed.address)) problems.push(`${at} is listed twice`);
    else addresses.push(parsed.address);
  }
  return Object.freeze({
    mode: "bridge",
    bridge,
    tapPrefix,
    tapPrefixDerived: raw.tap_prefix === undefined,
    gateway: Object.freeze({ address: gateway.address, prefixLength: gateway.prefixLength }),
    range,
    addresses: Object.freeze(addresses),
    policy,
  });
}

/** `dns_servers` of a group: IPv4 addresses (TAP modes carry no IPv6). */
export function parseDnsServers(raw: readonly string[] | undefined, groupIndex: number, problems: string[]): readonly string[] {
  const servers: string[] = [];
  for (const [index, text] of (raw ?? []).entries()) {
    const value = parseIpv4(text.trim());
    if (value === undefined) problems.push(`config.host_groups[${groupIndex}].dns_servers[${index}] ${quote(text)} is not an IPv4 address, e.g. "1.1.1.1"`);
    else servers.push(formatIpv4(value));
  }
  return Object.freeze(servers);
}

export function parsePortRange(text: string | undefined, problems: string[]): PortRange {
  if (text === undefined) return DEFAULT_PORT_RANGE;
  const match = /^(\d{1,5})-(\d{1,5})$/.exec(text.trim());
  const first = Number(match?.[1]);
  const last = Number(match?.[2]);
  if (!match || first < 1 || last > 65535 || first > last) {
    problems.push(`config.network.port_range ${quote(text)} must be FIRST-LAST with 1 ≤ FIRST ≤ LAST ≤ 65535, e.g. "20000-29999"`);
    return DEFAULT_PORT_RANGE;
  }
  return Object.freeze({ first, last });
}

/** The addresses a group's VMs live in, with the YAML path and text that set them (for overlap messages). */
interface GroupSpace {
  readonly cidr: Cidr;
  readonly label: string;
}

function spaceOf(network: GroupNetwork, index: number, raw: RawGroupNetwork | undefined): GroupSpace | undefined {
  const path = `config.host_groups[${index}].network`;
  if (network.mode === "bridge") {
    if (network.gateway.prefixLength === 32) return undefined;
    const cidr = { network: networkOf(network.gateway.address, network.gateway.prefixLength), prefixLength: network.gateway.prefixLength };
    return { cidr, label: `${path}.gateway ${quote(raw?.gateway ?? formatCidr(cidr))}` };
  }
  if (network.mode === "isolated" && network.range !== UNDERIVED) {
    const text = network.rangeDerived ? `${quote(formatCidr(network.range))} (derived from the group's name)` : quote(raw?.range ?? formatCidr(network.range));
    return { cidr: network.range, label: `${path}.range ${text}` };
  }
  return undefined;
}

/**
 * The checks and defaults that need every group: derived isolated ranges (a /22 of 169.254.0.0/16 picked by a
 * hash of the name, never the metadata service's /22, never one another group uses), then pairwise overlaps,
 * bridge names and tap prefixes. Answers the groups' networks with derived ranges filled in.
 */
export function settleGroupNetworks(groups: readonly { name: string; network: GroupNetwork; raw: RawGroupNetwork | undefined }[], problems: string[]): GroupNetwork[] {
  const networks = groups.map((g) => g.network);
  const taken = (): Cidr[] => networks.flatMap((n, i) => spaceOf(n, i, groups[i]?.raw)?.cidr ?? []);
  for (const [index, group] of groups.entries()) {
    const network = networks[index]!;
    if (network.mode !== "isolated" || network.range !== UNDERIVED) continue;
    const range = deriveIsolatedRange(group.name, [METADATA_BLOCK, ...taken()]);
    if (range === undefined) {
      problems.push(`config.host_groups[${index}].network.range is needed: no /22 of 169.254.0.0/16 is left for host group ${quote(group.name)}, give it a range`);
      continue;
    }
    networks[index] = Object.freeze({ ...network, range });
  }
  const spaces = networks.map((n, i) => spaceOf(n, i, groups[i]?.raw));
  for (let later = 0; later < spaces.length; later++) {
    for (let earlier = 0; earlier < later; earlier++) {
      const a = spaces[later];
      const b = spaces[earlier];
      if (a === undefined || b === undefined || !cidrsOverlap(a.cidr, b.cidr)) continue;
      const what = networks[later]!.mode === "isolated" ? "range" : "subnet";
      problems.push(`${a.label} overlaps ${b.label}: give each host group its own ${what}`);
    }
  }
  const firstWith = new Map<string, number>();
  for (const [index, network] of networks.entries()) {
    if (network.mode !== "bridge") continue;
    for (const [key, value] of [
      ["bridge", network.bridge],
      ["tap_prefix", network.tapPrefix],
    ] as const) {
      const seen = firstWith.get(`${key}:${value}`);
      if (seen === undefined) firstWith.set(`${key}:${value}`, index);
      else problems.push(`config.host_groups[${index}].network.${key} ${quote(value)} is also config.host_groups[${seen}]'s: give each host group its own`);
    }
  }
  return networks;
}

/** sha256 of the name picks a /22 of 169.254.0.0/16; taken ones are skipped in order, wrapping round. */
export function deriveIsolatedRange(groupName: string, taken: readonly Cidr[]): Cidr | undefined {
  const count = sizeOf(LINK_LOCAL) / 2 ** (32 - DERIVED_PREFIX);
  const start = createHash("sha256").update(groupName).digest().readUInt32BE(0) % count;
  for (let step = 0; step < count; step++) {
    const candidate: Cidr = Object.freeze({ network: LINK_LOCAL.network + ((start + step) % count) * 2 ** (32 - DERIVED_PREFIX), prefixLength: DERIVED_PREFIX });
    if (!taken.some((t) => rangesOverlap(rangeOf(t), rangeOf(candidate)))) return candidate;
  }
  return undefined;
}
