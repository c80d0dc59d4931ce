// IPv4 addresses, prefixes and ranges as numbers: parsing, containment, overlap, /30 blocks. Pure; every
// parser answers a problem sentence instead of throwing, so config and request validation can name the field.

export interface Cidr {
  /** The network address (host bits cleared), as an unsigned 32-bit number. */
  readonly network: number;
  readonly prefixLength: number;
}

/** An address given with its prefix ("192.168.137.1/24"): the address itself is kept, not only its network. */
export interface AddressWithPrefix {
  readonly address: number;
  readonly prefixLength: number;
}

export interface AddressRange {
  readonly first: number;
  readonly last: number;
}

export type Parsed<T> = T | { problem: string };

export function isProblem<T>(value: Parsed<T>): value is { problem: string } {
  return typeof value === "object" && value !== null && "problem" in value;
}

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** "10.0.0.1" → number; leading zeros and out-of-range octets are refused (they read as octal elsewhere). */
export function parseIpv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) return undefined;
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function formatIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join(".");
}

export function maskOf(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0;
}

export function networkOf(address: number, prefixLength: number): number {
  return (address & maskOf(prefixLength)) >>> 0;
}

export function sizeOf(cidr: Pick<Cidr, "prefixLength">): number {
  return 2 ** (32 - cidr.prefixLength);
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIpv4(cidr.network)}/${cidr.prefixLength}`;
}

function looksIpv6(text: string): boolean {
  return text.includes(":") && /^[0-9a-fA-F:]*:[0-9a-fA-F:.]*(\/\d+)?$/.test(text) && text.split(":").length > 2;
}

/** "A.B.C.D/N" with the address kept ("192.168.137.1/24"). */
export function parseAddressWithPrefix(text: string): Parsed<AddressWithPrefix> {
  if (looksIpv6(text)) return { problem: `"${text}" is IPv6: only IPv4 is supported` };
  const match = /^([^/]+)\/(\d{1,2})$/.exec(text);
  if (!match) return { problem: `"${text}" is not an IPv4 address with a prefix length, e.g. "192.168.137.1/24"` };
  const address = parseIpv4(match[1] as string);
  const prefixLength = Number(match[2]);
  if (address === undefined) return { problem: `"${text}" does not start with an IPv4 address` };
  if (prefixLength > 32) return { problem: `"${text}" has a prefix length over 32` };
  return { address, prefixLength };
}

/** "A.B.C.D/N" or a bare address (a /32); host bits must be clear unless `allowHostBits`. */
export function parseCidr(text: string, options: { allowHostBits?: boolean } = {}): Parsed<Cidr> {
  if (looksIpv6(text)) return { problem: `"${text}" is IPv6: only IPv4 is supported` };
  if (!text.includes("/")) {
    const address = parseIpv4(text);
    return address === undefined ? { problem: `"${text}" is not an IPv4 address or CIDR, e.g. "10.0.0.0/8"` } : { network: address, prefixLength: 32 };
  }
  const parsed = parseAddressWithPrefix(text);
  if (isProblem(parsed)) return parsed;
  const network = networkOf(parsed.address, parsed.prefixLength);
  if (network !== parsed.address && !options.allowHostBits) {
    return { problem: `"${text}" has host bits set: its network is "${formatIpv4(network)}/${parsed.prefixLength}"` };
  }
  return { network, prefixLength: parsed.prefixLength };
}

/** "A-B" (inclusive, A ≤ B) or a CIDR (all of its addresses). */
export function parseRange(text: string): Parsed<AddressRange> {
  const dash = text.split("-");
  if (dash.length === 2) {
    const first = parseIpv4(dash[0]!.trim());
    const last = parseIpv4(dash[1]!.trim());
    if (first === undefined || last === undefined) return { problem: `"${text}" is not a range of two IPv4 addresses, e.g. "192.168.137.20-192.168.137.80"` };
    if (first > last) return { problem: `"${text}" ends before it starts` };
    return { first, last };
  }
  const cidr = parseCidr(text);
  if (isProblem(cidr)) return cidr;
  return rangeOf(cidr);
}

export function rangeOf(cidr: Cidr): AddressRange {
  return { first: cidr.network, last: cidr.network + sizeOf(cidr) - 1 };
}

export function cidrContains(cidr: Cidr, address: number): boolean {
  return networkOf(address, cidr.prefixLength) === cidr.network;
}

export function rangesOverlap(a: AddressRange, b: AddressRange): boolean {
  return a.first <= b.last && b.first <= a.last;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return rangesOverlap(rangeOf(a), rangeOf(b));
}

/** The index-th /30 block of a range that is itself a whole number of /30s: [network, gateway, VM, broadcast]. */
export function block30(range: Cidr, index: number): { network: number; gateway: number; address: number; broadcast: number } {
  const network = range.network + index * 4;
  return { network, gateway: network + 1, address: network + 2, broadcast: network + 3 };
}

/**
 * One entry of Slicer's `drop`/`allow` lists: a CIDR, a bare address, or either with ":PORT"
 * ("192.168.222.1:3128"). A port applies to TCP and UDP.
 */
export interface EgressEntry {
  readonly cidr: Cidr;
  readonly port: number | undefined;
  /** As written, for display and for GET /vm/HOST. */
  readonly text: string;
}

export function parseEgressEntry(text: string): Parsed<EgressEntry> {
  if (typeof text !== "string" || text.trim() === "") return { problem: "is empty: give a CIDR, an address, or ADDRESS:PORT" };
  const trimmed = text.trim();
  if (looksIpv6(trimmed)) return { problem: `"${trimmed}" is IPv6: only IPv4 entries are supported` };
  const colon = trimmed.lastIndexOf(":");
  let port: number | undefined;
  let host = trimmed;
  if (colon >= 0) {
    const portText = trimmed.slice(colon + 1);
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      return { problem: `"${trimmed}" has no valid port after ":" (1 to 65535)` };
    }
    port = Number(portText);
    host = trimmed.slice(0, colon);
  }
  const cidr = parseCidr(host, { allowHostBits: false });
  if (isProblem(cidr)) return cidr;
  return { cidr, port, text: trimmed };
}
