// Names of the host devices and tables one daemon makes: a tag from its state directory (several daemons on
// one host never share a name), interface names within Linux's 15 characters, and the aliases that mark a
// link as this daemon's (`corral:<tag>:<group>[:<device id>]`) so a restart can tell its own from others'.
import { createHash } from "node:crypto";

/** Linux's IFNAMSIZ is 16 with the final NUL. */
export const MAX_IFNAME = 15;

/** The first 8 hex digits of sha256(stateDir): this daemon's tables and aliases. */
export function daemonTag(stateDir: string): string {
  return createHash("sha256").update(stateDir).digest("hex").slice(0, 8);
}

export function netTable(tag: string): string {
  return `corral_net_${tag}`;
}

export function bridgeTable(tag: string): string {
  return `corral_br_${tag}`;
}

/** `c<tag4>-<group index>-`: a TAP prefix that ends in no digit, unique per group and per daemon. */
export function defaultTapPrefix(tag: string, groupIndex: number): string {
  return `c${tag.slice(0, 4)}-${groupIndex}-`;
}

/** The prefix of the host ends of isolated VMs' veths: `ci<tag4>-` (nft matches `ci<tag4>-*`). */
export function vethPrefix(tag: string): string {
  return `ci${tag.slice(0, 4)}-`;
}

export function deviceName(prefix: string, deviceId: number): string {
  const name = `${prefix}${deviceId}`;
  if (name.length > MAX_IFNAME) throw new Error(`Interface name "${name}" is longer than ${MAX_IFNAME} characters`);
  return name;
}

export function groupAlias(tag: string, hostgroup: string): string {
  return `corral:${tag}:${hostgroup}`;
}

export function deviceAlias(tag: string, hostgroup: string, deviceId: number): string {
  return `corral:${tag}:${hostgroup}:${deviceId}`;
}

export interface ParsedAlias {
  tag: string;
  hostgroup: string;
  deviceId: number | undefined;
}

/** Reads an alias of ours (any daemon's); undefined for anything else. */
export function parseAlias(alias: string | undefined): ParsedAlias | undefined {
  const match = /^corral:([0-9a-f]{8}):([^:]+)(?::(\d+))?$/.exec(alias ?? "");
  if (!match) return undefined;
  return { tag: match[1] as string, hostgroup: match[2] as string, deviceId: match[3] === undefined ? undefined : Number(match[3]) };
}
