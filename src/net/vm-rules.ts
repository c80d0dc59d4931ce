// The nftables tables inside an isolated VM's own network namespace, as text for `nft -f -` (pure, pinned by
// tests like qemu-args.ts). They live in the namespace QEMU holds, so they die with QEMU (nothing to clean up
// after kill -9) and survive a host `nft flush ruleset`. Two tables:
// - `bridge corral_vm`: the anti-spoof guard on the namespace bridge `br0` {tap0, veth0}. What comes out of the
//   TAP must carry the VM's MAC and address (frames, ARP, IPv4); IPv6 is dropped in both directions (the policy
//   is IPv4 only, so IPv6 would be a way around it). With the guard, the inet table can trust addresses.
// - `inet corral_vm`: the egress policy. `br0` has `nf_call_iptables 1`, so bridged IPv4 passes the inet forward
//   hook with conntrack (the bridge family has none on this kernel). Both directions show `iifname br0`, so
//   rules key on addresses. Forward policy drop: replies pass, the VM's new connections are judged by its
//   policy, and from outside only mapped guest ports (the host's DNAT) get in.
// Each table carries a digest of its own text in its comment, so recovery can tell a current table from a
// stale or missing one without parsing nft's listing back.
import { createHash } from "node:crypto";
import { formatIpv4, parseIpv4, type Cidr } from "./cidr.ts";
import type { EgressPolicy } from "./network-config.ts";
import { egressStatements, METADATA_CIDR } from "./policy.ts";

export const VM_TABLE = "corral_vm";
/** The namespace's devices: QEMU's TAP, the namespace end of the veth, the bridge joining them. */
export const VM_TAP = "tap0";
export const VM_VETH = "veth0";
export const VM_BRIDGE = "br0";

/** A VM's /30 block: network, gateway (the host end of the veth), the VM; broadcast is network + 3. */
export interface VmBlock {
  readonly network: number;
  readonly gateway: number;
  readonly address: number;
}

export interface VmRulesInput {
  readonly block: VmBlock;
  readonly mac: string;
  /** The guest's DNS servers: port 53 to them is allowed (set them to 127.0.0.1 to make DNS fail fast). */
  readonly dns: readonly string[];
  readonly policy: EgressPolicy;
  readonly denyOutgoing: boolean;
  /** Guest ports the host DNATs to (TTstack's port_map): the only connections that may come in. */
  readonly guestPorts: readonly number[];
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

function checkedMac(mac: string): string {
  const lower = mac.toLowerCase();
  if (!MAC.test(lower)) throw new Error(`Cannot write rules for MAC "${mac}": it is not six hex pairs`);
  return lower;
}

function digestOf(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 16);
}

/** `table FAMILY corral_vm` replaced whole in one transaction: created if absent, deleted, written again. */
function replaceTable(family: "bridge" | "inet", body: readonly string[]): string {
  const text = body.join("\n");
  return [`table ${family} ${VM_TABLE}`, `delete table ${family} ${VM_TABLE}`, `table ${family} ${VM_TABLE} {`, `\tcomment "corral ${digestOf(text)}"`, text, "}", ""].join("\n");
}

/** A chain's lines: every statement on its own line (nft refuses `… drop }` on one line). */
function chain(name: string, lines: readonly string[]): string[] {
  return [`\tchain ${name} {`, ...lines.map((l) => `\t\t${l}`), "\t}"];
}

/** The anti-spoof guard on the namespace bridge. */
export function guardTable(input: Pick<VmRulesInput, "block" | "mac">): string {
  const mac = checkedMac(input.mac);
  const address = formatIpv4(input.block.address);
  const tap = `iifname "${VM_TAP}"`;
  return replaceTable("bridge", [
    ...chain("prerouting", [
      // Before anything else the bridge does with a frame (-200: the bridge family's filter priority).
      "type filter hook prerouting priority -200; policy accept;",
      "ether type ip6 drop",
      `${tap} ether saddr != ${mac} drop`,
      `${tap} ether type != { ip, arp } drop`,
      `${tap} arp saddr ether != ${mac} drop`,
      `${tap} arp saddr ip != ${address} drop`,
      `${tap} ether type ip ip saddr != ${address} drop`,
      // Nothing from the host side may pose as the VM (its replies would then pass as the VM's).
      `iifname "${VM_VETH}" ether type ip ip saddr ${address} drop`,
      `iifname "${VM_VETH}" ether type arp arp saddr ip ${address} drop`,
    ]),
    // The namespace's own devices send no IPv6 (they have no address), but the guard says so for certain.
    ...chain("output", ["type filter hook output priority -200; policy accept;", "ether type ip6 drop"]),
  ]);
}

/** The VM's own /30: its gateway (the host end of the veth), network and broadcast are guarded like metadata. */
export function blockCidr(block: VmBlock): Cidr {
  return { network: block.network, prefixLength: 30 };
}

/** Multicast and the limited broadcast: routed nowhere but to the host's own listeners, so guarded as the host. */
const MULTICAST: Cidr = Object.freeze({ network: 0xe0000000, prefixLength: 4 });
const BROADCAST: Cidr = Object.freeze({ network: 0xffffffff, prefixLength: 32 });

function dnsStatement(dns: readonly string[]): string[] {
  const servers = [...new Set(dns.filter((d) => parseIpv4(d) !== undefined))];
  if (servers.length === 0) return [];
  const set = servers.length === 1 ? servers[0] : `{ ${servers.join(", ")} }`;
  return [`ip daddr ${set} meta l4proto { tcp, udp } th dport 53 accept`];
}

/**
 * The egress policy and the inbound rule. Order in `egress`: deny_outgoing's `ct state new drop`; DNS to the
 * VM's own resolvers (it was told to use them; a daemon relaying DNS on the gateway needs it); the entries,
 * the most specific first, with the metadata address, the VM's /30 (the gateway, i.e. the host), multicast and
 * the limited broadcast dropped unless an entry at least as specific names them; the default verdict.
 */
export function policyTable(input: Omit<VmRulesInput, "mac">): string {
  const address = formatIpv4(input.block.address);
  const ports = [...new Set(input.guestPorts)].sort((a, b) => a - b);
  for (const port of ports) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`Cannot write rules for guest port ${port}: not 1 to 65535`);
  }
  const egress = egressStatements(input.policy, { denyOutgoing: false, guarded: [METADATA_CIDR, BROADCAST, blockCidr(input.block), MULTICAST] });
  const inbound = ports.length === 0 ? [] : [`ip daddr ${address} tcp dport ${ports.length === 1 ? ports[0] : `{ ${ports.join(", ")} }`} ct state new accept`];
  return replaceTable("inet", [
    ...chain("forward", [
      "type filter hook forward priority filter; policy drop;",
      "ct state established,related accept",
      "ct state invalid drop",
      `ip saddr ${address} jump egress`,
      ...inbound,
    ]),
    ...chain("egress", [...(input.denyOutgoing ? ["ct state new drop"] : []), ...dnsStatement(input.dns), ...egress]),
  ]);
}

/** Both tables, for plumbing: one `nft -f` transaction. */
export function vmRulesScript(input: VmRulesInput): string {
  return guardTable(input) + policyTable(input);
}

/** The digest a table written from this input carries in its comment (see inspectDigest). */
export function expectedDigests(input: VmRulesInput): { bridge: string; inet: string } {
  const read = (script: string): string => /comment "corral ([0-9a-f]+)"/.exec(script)?.[1] ?? "";
  return { bridge: read(guardTable(input)), inet: read(policyTable(input)) };
}

/** The digest in the comment of a table as `nft list table FAMILY corral_vm` prints it, or undefined. */
export function digestInListing(listing: string): string | undefined {
  return /comment "corral ([0-9a-f]+)"/.exec(listing)?.[1];
}
