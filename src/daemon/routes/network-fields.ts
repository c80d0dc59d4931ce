// The networking fields of request bodies (create's `ip` and `network`, fork's `network`, PATCH
// /vm/HOST/network) checked against the VM's host group, and each group's network as GET /hostgroup and
// GET /info show it. Routes parse here; VmManager and src/net act.
import { formatCidr, formatIpv4, isProblem, networkOf, parseIpv4, rangeOf, type Cidr } from "../../net/cidr.ts";
import type { GroupNetwork } from "../../net/network-config.ts";
import { parsePolicyOverride, type PolicyOverride } from "../../net/policy.ts";
import { CorralError, quote } from "../../protocol/errors.ts";
import type { GroupNetworkInfo } from "../../protocol/slicer.ts";
import type { GroupNetworkInfo as NetGroupInfo } from "../../net/network-info.ts";
import { isBuiltInGroup, type HostGroupConfig } from "../config.ts";

/** Where a group's mode is set, for messages: its YAML path, or why it has none. */
export function modePath(group: HostGroupConfig, groups: readonly HostGroupConfig[]): string {
  const index = groups.indexOf(group);
  return index >= 0 && !isBuiltInGroup(group)
    ? `config.host_groups[${index}].network.mode`
    : `its network (host group ${quote(group.name)} is not configured: add it to config.host_groups with a network: section)`;
}

type PolicyBodyLists = { allow?: readonly string[] | null; drop?: readonly string[] | null };

/** Parses allow/drop lists of a body; a bad entry is a 400 naming it (`Invalid body field "network.allow[1]": …`). */
function parseBodyLists(lists: PolicyBodyLists, field: "network" | ""): PolicyOverride {
  const parsed = parsePolicyOverride(lists, field);
  if (!isProblem(parsed)) return parsed;
  const match = /^\.?(\S+\[\d+\]) (.*)$/s.exec(parsed.problem);
  throw new CorralError("invalid_request", match ? `Invalid body field ${quote(match[1])}: ${match[2]}` : `Invalid body field ${quote(field || "allow")}: ${parsed.problem}`);
}

/** Slicer's `network: {allow?, drop?}` of a create or fork: only bridge and isolated groups take a VM policy. */
export function parseNetworkOverride(lists: PolicyBodyLists | undefined, group: HostGroupConfig, groups: readonly HostGroupConfig[]): PolicyOverride | undefined {
  if (lists === undefined) return undefined;
  if (group.network.mode === "user") {
    throw new CorralError(
      "invalid_request",
      `Invalid body field "network": host group ${quote(group.name)} uses user-mode networking (${modePath(group, groups)}), which takes no allow/drop lists: use a host group in bridge or isolated mode`,
    );
  }
  return parseBodyLists(lists, "network");
}

/**
 * PATCH /vm/HOST/network's lists, checked before the VM is touched: a bad entry, or lists for a user-mode
 * VM, are 400s (deny_outgoing of a user-mode VM is the manager's 409: it is fixed at start).
 */
export function checkPatchLists(body: PolicyBodyLists & { deny_outgoing?: boolean }, group: HostGroupConfig, groups: readonly HostGroupConfig[]): void {
  if (body.allow === undefined && body.drop === undefined && body.deny_outgoing === undefined) {
    throw new CorralError("invalid_request", 'Give at least one of the body fields "allow", "drop" and "deny_outgoing"');
  }
  parseBodyLists(body, "");
  if (group.network.mode === "user" && (body.allow !== undefined || body.drop !== undefined)) {
    const field = body.allow !== undefined ? "allow" : "drop";
    throw new CorralError(
      "invalid_request",
      `Invalid body field ${quote(field)}: host group ${quote(group.name)} uses user-mode networking (${modePath(group, groups)}), which takes no allow/drop lists: use a host group in bridge or isolated mode`,
    );
  }
}

/** Slicer's `ip` of a create: a bridge group's address, checked here for form and subnet (the pool and leases are src/net's). */
export function parseStaticIp(ip: string | undefined, group: HostGroupConfig, configured: readonly HostGroupConfig[]): string | undefined {
  if (ip === undefined || ip === "") return undefined;
  const network = group.network;
  if (network.mode === "user") {
    throw new CorralError(
      "invalid_request",
      `Invalid body field "ip": host group ${quote(group.name)} uses user-mode networking (${modePath(group, configured)}), where addresses are not chosen per VM`,
    );
  }
  if (network.mode === "isolated") {
    throw new CorralError("invalid_request", `Invalid body field "ip": host group ${quote(group.name)} is in isolated mode, where VMs get a /30 block each: leave "ip" out`);
  }
  // Slicer's examples write the address alone; "A/P" with the group's own prefix is taken too.
  const [addressText, prefixText] = ip.split("/");
  const address = parseIpv4(addressText ?? "");
  const subnet: Cidr = { network: networkOf(network.gateway.address, network.gateway.prefixLength), prefixLength: network.gateway.prefixLength };
  if (address === undefined || (prefixText !== undefined && Number(prefixText) !== subnet.prefixLength)) {
    throw new CorralError(
      "invalid_request",
      `Invalid body field "ip": ${quote(ip)} is not an IPv4 address of the subnet ${quote(formatCidr(subnet))}, e.g. ${quote(formatIpv4(subnet.network + 2))}`,
    );
  }
  const { first, last } = rangeOf(subnet);
  if (address < first || address > last) {
    throw new CorralError("invalid_request", `Invalid body field "ip": ${quote(ip)} is outside host group ${quote(group.name)}'s subnet ${quote(formatCidr(subnet))}`);
  }
  return formatIpv4(address);
}

/** A group's network as /hostgroup and /info show it, from its configuration alone (no live state). */
export function configuredGroupNetwork(group: HostGroupConfig): GroupNetworkInfo {
  return describeGroupNetwork(group.name, group.network);
}

function describeGroupNetwork(name: string, network: GroupNetwork): GroupNetworkInfo {
  switch (network.mode) {
    case "user":
      return { name, mode: "user", state: "ready", reason: "" };
    case "bridge": {
      const range = network.range ? `${formatIpv4(network.range.first)}-${formatIpv4(network.range.last)}` : undefined;
      return {
        name,
        mode: "bridge",
        state: "unavailable",
        reason: "bridge mode is not set up by this daemon yet",
        bridge: network.bridge,
        gateway: `${formatIpv4(network.gateway.address)}/${network.gateway.prefixLength}`,
        ...(range !== undefined ? { range } : {}),
      };
    }
    case "isolated":
      return { name, mode: "isolated", state: "unavailable", reason: "isolated mode is not set up by this daemon yet", range: formatCidr(network.range) };
  }
}

/**
 * Each group's network: the network manager's live view for bridge and isolated groups (set up or not and
 * why, addresses free), the configuration's for user-mode ones.
 */
export function groupNetworks(manager: { groupNetwork(name: string): NetGroupInfo | undefined }, groups: readonly HostGroupConfig[]): GroupNetworkInfo[] {
  return groups.map((g) => {
    const live = manager.groupNetwork(g.name);
    return live ? wireGroupNetwork(live) : configuredGroupNetwork(g);
  });
}

function wireGroupNetwork(info: NetGroupInfo): GroupNetworkInfo {
  return {
    name: info.hostgroup,
    mode: info.mode,
    state: info.state,
    reason: info.reason ?? "",
    ...(info.bridge !== null ? { bridge: info.bridge } : {}),
    ...(info.gateway !== null ? { gateway: info.gateway } : {}),
    range: info.range,
    free_addresses: info.free_addresses,
  };
}
