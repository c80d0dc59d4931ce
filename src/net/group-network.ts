// Per host group network set-up at daemon start: the group's pool (its subnet pinned in the state), the
// checks against the host (a subnet overlapping an interface that is not this daemon's refuses the start),
// the bridge made or adopted by its alias, ip_forward, and the group's state: `ready`, or `unavailable`
// with a sentence naming what is missing (the daemon still starts; other groups keep working).
import { cidrsOverlap, formatCidr, formatIpv4, isProblem, networkOf, parseCidr, parseIpv4, type Cidr } from "./cidr.ts";
import { missingFor, type NetCapabilities } from "./capabilities.ts";
import { bridgePool, isolatedPool, type AddressPool } from "./ipam.ts";
import type { IpamStore } from "./ipam-store.ts";
import { bridgeBatch, type HostLink, type LinkRunner } from "./link-commands.ts";
import { defaultTapPrefix, groupAlias, parseAlias, vethPrefix } from "./names.ts";
import type { BridgeGroupNetwork, GroupNetwork, IsolatedGroupNetwork } from "./network-config.ts";
import type { Logger } from "../util/log.ts";

export type GroupState = "ready" | "unavailable";

export interface GroupSetUp {
  readonly hostgroup: string;
  readonly network: BridgeGroupNetwork | IsolatedGroupNetwork;
  readonly state: GroupState;
  readonly reason: string | undefined;
  readonly pool: AddressPool;
  /** Bridge mode: the TAP prefix in use (configured, or this daemon's default). */
  readonly tapPrefix: string | undefined;
  /** `config.host_groups[i].network`. */
  readonly fieldPath: string;
}

export interface GroupInput {
  readonly name: string;
  readonly index: number;
  readonly network: GroupNetwork;
}

export interface GroupSetUpDeps {
  readonly tag: string;
  readonly caps: NetCapabilities;
  readonly ipam: IpamStore;
  readonly runner: LinkRunner;
  readonly log: Logger;
  /** False until isolated-attachment.ts is wired in: isolated groups are then unavailable, saying so. */
  readonly isolatedBuilt: boolean;
}

/** The subnet a group claims on the host: a bridge's gateway subnet, an isolated range. */
function claimOf(network: BridgeGroupNetwork | IsolatedGroupNetwork, pool: AddressPool): { cidr: Cidr; field: string; text: string } {
  const cidr = parseCidr(pool.subnet) as Cidr;
  if (network.mode === "bridge") {
    const { address, prefixLength } = network.gateway;
    return { cidr: { network: networkOf(address, prefixLength), prefixLength }, field: "gateway", text: `${formatIpv4(address)}/${prefixLength}` };
  }
  return { cidr, field: "range", text: pool.subnet };
}

/** Links this daemon made (its aliases, its isolated veths) do not count as overlaps. */
function isOurs(link: HostLink, tag: string): boolean {
  return parseAlias(link.alias)?.tag === tag || link.name.startsWith(vethPrefix(tag));
}

/**
 * Refuses the start when a group's subnet overlaps an address on a host interface that is not this daemon's
 * (another daemon's bridge, a LAN): traffic would go to the wrong place. The message names both.
 */
export function assertNoHostOverlap(group: GroupInput, claim: { cidr: Cidr; field: string; text: string }, links: readonly HostLink[], tag: string): void {
  for (const link of links) {
    if (isOurs(link, tag)) continue;
    for (const a of link.addresses) {
      const address = parseIpv4(a.address);
      if (address === undefined) continue;
      const theirs = { network: networkOf(address, a.prefixLength), prefixLength: a.prefixLength };
      if (!cidrsOverlap(theirs, claim.cidr)) continue;
      const owner = parseAlias(link.alias) ? `alias "${link.alias}", another Corral daemon` : link.alias ? `alias "${link.alias}"` : "not Corral's";
      throw new Error(
        `Cannot start: config.host_groups[${group.index}].network.${claim.field} "${claim.text}" overlaps ${formatCidr(theirs)} on interface "${link.name}" (${owner}): give this host group another subnet`,
      );
    }
  }
}

/** Sets up one bridge or isolated group (user groups need nothing); throws only when the start must be refused. */
export async function setUpGroup(group: GroupInput, deps: GroupSetUpDeps, links: readonly HostLink[]): Promise<GroupSetUp | undefined> {
  const { network } = group;
  if (network.mode === "user") return undefined;
  const fieldPath = `config.host_groups[${group.index}].network`;
  let pool: AddressPool;
  if (network.mode === "bridge") {
    pool = bridgePool(group.name, network, fieldPath);
    deps.ipam.pinGroup(group.name, "bridge", pool.subnet);
  } else {
    const pinned = deps.ipam.pinGroup(group.name, "isolated", formatCidr(network.range), { keepPinned: network.rangeDerived });
    const range = parseCidr(pinned);
    pool = isolatedPool(group.name, network, fieldPath, isProblem(range) ? undefined : range);
  }
  const claim = claimOf(network, pool);
  const tapPrefix = network.mode === "bridge" ? (network.tapPrefixDerived || !network.tapPrefix ? defaultTapPrefix(deps.tag, group.index) : network.tapPrefix) : undefined;
  const result = (state: GroupState, reason: string | undefined): GroupSetUp => ({ hostgroup: group.name, network, state, reason, pool, tapPrefix, fieldPath });
  const unavailable = (reason: string): GroupSetUp => {
    const sentence = `Host group "${group.name}" (network.mode ${network.mode}) is unavailable: ${reason}`;
    deps.log.error({ hostgroup: group.name }, sentence);
    return result("unavailable", sentence);
  };
  const missing = missingFor(network.mode, deps.caps, fieldPath);
  if (missing) return unavailable(missing);
  if (network.mode === "isolated" && !deps.isolatedBuilt) return unavailable("isolated mode is not built yet in this Corral");

  if (network.mode === "bridge") {
    const existing = links.find((l) => l.name === network.bridge);
    const alias = groupAlias(deps.tag, group.name);
    if (existing && existing.alias !== alias) {
      const whose = parseAlias(existing.alias) ? `another Corral daemon's or group's (alias "${existing.alias}")` : "not Corral's (no Corral alias)";
      return unavailable(`the interface "${network.bridge}" exists and is ${whose}: give ${fieldPath}.bridge another name, or delete that interface`);
    }
    const foreignTap = links.find((l) => tapPrefix !== undefined && l.name.startsWith(tapPrefix) && /^\d+$/.test(l.name.slice(tapPrefix.length)) && !isOurs(l, deps.tag));
    if (foreignTap)
      return unavailable(`the interface "${foreignTap.name}" has this group's TAP prefix "${tapPrefix}" and is not this daemon's: set ${fieldPath}.tap_prefix to another prefix`);
    assertNoHostOverlap(group, claim, links, deps.tag);
    const gateway = `${formatIpv4(network.gateway.address)}/${network.gateway.prefixLength}`;
    try {
      await deps.runner.ipBatch(bridgeBatch({ bridge: network.bridge, alias, gateway, adopt: existing !== undefined }));
      // 127.0.0.1:PORT of a port map reaches the VM through DNAT only if loopback sources may leave here.
      await deps.runner.sysctl(`net/ipv4/conf/${network.bridge}/route_localnet`, "1");
    } catch (err) {
      return unavailable(`the bridge "${network.bridge}" cannot be set up: ${err instanceof Error ? err.message.split("\n").slice(-2).join(" ") : String(err)}`);
    }
  } else {
    assertNoHostOverlap(group, claim, links, deps.tag);
  }
  try {
    await deps.runner.sysctl("net/ipv4/ip_forward", "1");
  } catch (err) {
    return unavailable(`net.ipv4.ip_forward cannot be turned on: ${err instanceof Error ? err.message : String(err)}`);
  }
  deps.log.info(
    { hostgroup: group.name, mode: network.mode, subnet: pool.subnet, bridge: network.mode === "bridge" ? network.bridge : undefined },
    "Host group network ready (net.ipv4.ip_forward is on: this host routes for its VMs)",
  );
  return result("ready", undefined);
}

/**
 * Sets up every group in order; two groups of this daemon whose subnets overlap refuse the start too (config
 * parsing refuses that first; this holds for a derived isolated range pinned earlier).
 */
export async function setUpGroups(groups: readonly GroupInput[], deps: GroupSetUpDeps): Promise<Map<string, GroupSetUp>> {
  const links = await deps.runner.links().catch(() => [] as HostLink[]);
  const done = new Map<string, GroupSetUp>();
  for (const group of groups) {
    const setUp = await setUpGroup(group, deps, links);
    if (!setUp) continue;
    const mine = claimOf(setUp.network, setUp.pool);
    for (const other of done.values()) {
      const theirs = claimOf(other.network, other.pool);
      if (cidrsOverlap(mine.cidr, theirs.cidr)) {
        throw new Error(
          `Cannot start: ${setUp.fieldPath}.${mine.field} "${mine.text}" overlaps ${other.fieldPath}.${theirs.field} "${theirs.text}": give each host group its own range`,
        );
      }
    }
    done.set(group.name, setUp);
  }
  return done;
}
