// What GET /info and GET /hostgroup show of bridge and isolated networking: this daemon's tables, each
// group's state (with the reason when unavailable), its addresses and how many are free, ip_forward, vhost.
import { readFileSync } from "node:fs";
import { formatIpv4 } from "./cidr.ts";
import type { GroupSetUp } from "./group-network.ts";
import type { IpamStore } from "./ipam-store.ts";
import { bridgeTable, netTable } from "./names.ts";

export interface GroupNetworkInfo {
  hostgroup: string;
  mode: "bridge" | "isolated";
  state: "ready" | "unavailable";
  reason: string | null;
  bridge: string | null;
  gateway: string | null;
  range: string;
  addresses: number;
  free_addresses: number;
}

export interface NetworkInfo {
  tables: string[];
  groups: GroupNetworkInfo[];
  ip_forward: boolean;
  vhost: boolean;
}

export function groupNetworkInfo(group: GroupSetUp, ipam: IpamStore): GroupNetworkInfo {
  const leased = ipam.groupLeases(group.hostgroup).length;
  const { network } = group;
  return {
    hostgroup: group.hostgroup,
    mode: network.mode,
    state: group.state,
    reason: group.reason ?? null,
    bridge: network.mode === "bridge" ? network.bridge : null,
    gateway: network.mode === "bridge" ? `${formatIpv4(network.gateway.address)}/${network.gateway.prefixLength}` : null,
    range: group.pool.subnet,
    addresses: group.pool.size,
    free_addresses: Math.max(0, group.pool.size - leased),
  };
}

export function networkInfo(input: { tag: string; groups: readonly GroupSetUp[]; ipam: IpamStore; vhost: boolean }): NetworkInfo {
  let ipForward = false;
  try {
    ipForward = readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim() === "1";
  } catch {
    // not Linux, or no /proc: reported as off
  }
  return {
    tables: input.groups.length > 0 ? [`inet ${netTable(input.tag)}`, `bridge ${bridgeTable(input.tag)}`] : [],
    groups: input.groups.map((g) => groupNetworkInfo(g, input.ipam)),
    ip_forward: ipForward,
    vhost: input.vhost,
  };
}
