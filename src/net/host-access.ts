// The host services guests may reach on purpose through the wall (config.network.host_access), one entry a
// service: `[tcp/|udp/][ADDRESS:]PORT[-PORT]`, e.g. "127.0.0.1:5432", "udp/[::1]:53", "tcp/6379". Parsed
// strictly here; host-wall-rules.ts turns each entry into one nft rule.
import { isIPv4, isIPv6 } from "node:net";

export type HostAccessProtocol = "tcp" | "udp";

export interface HostAccess {
  protocol: HostAccessProtocol;
  /** One host address (IPv4, or IPv6 without brackets); undefined: this port on every host address. */
  address: string | undefined;
  /** The first and the last port, inclusive (equal for a single port). */
  ports: readonly [number, number];
}

export const HOST_ACCESS_SHAPE = `[tcp/|udp/][ADDRESS:]PORT[-PORT] (e.g. "127.0.0.1:5432", "udp/[::1]:53", "tcp/6379")`;

const ENTRY = /^(?:(tcp|udp)\/)?(?:([0-9.]+|\[[0-9a-fA-F:.]+\]):)?(\d{1,5})(?:-(\d{1,5}))?$/;

/** An entry of config.network.host_access, or a problem that says what is wrong with it. */
export function parseHostAccess(entry: string): HostAccess | { problem: string } {
  const match = ENTRY.exec(entry);
  if (!match) return { problem: `must be ${HOST_ACCESS_SHAPE}, got ${JSON.stringify(entry)}` };
  const [, protocol = "tcp", rawAddress, firstText = "", lastText] = match;
  let address: string | undefined;
  if (rawAddress !== undefined) {
    address = rawAddress.startsWith("[") ? rawAddress.slice(1, -1) : rawAddress;
    const valid = rawAddress.startsWith("[") ? isIPv6(address) : isIPv4(address);
    if (!valid) return { problem: `names ${JSON.stringify(rawAddress)}, which is not an IPv4 address or an IPv6 address in brackets` };
    address = address.toLowerCase();
  }
  const first = Number(firstText);
  const last = lastText === undefined ? first : Number(lastText);
  for (const port of [first, last]) {
    if (port < 1 || port > 65535) return { problem: `names port ${port}: ports are 1 to 65535` };
  }
  if (last < first) return { problem: `names the range ${first}-${last}: the first port must not be above the last` };
  return { protocol: protocol as HostAccessProtocol, address, ports: [first, last] };
}

/** The canonical spelling of an entry (what GET /info lists): "tcp/127.0.0.1:5432", "udp/[::1]:53", "tcp/6379". */
export function formatHostAccess(access: HostAccess): string {
  const [first, last] = access.ports;
  const ports = first === last ? String(first) : `${first}-${last}`;
  if (access.address === undefined) return `${access.protocol}/${ports}`;
  const address = access.address.includes(":") ? `[${access.address}]` : access.address;
  return `${access.protocol}/${address}:${ports}`;
}
