// The nftables rules that wall guests off from the host's own services, as text for `nft -f -`, built by pure
// functions so tests can pin them (like qemu-args.ts). Why a kernel rule: under QEMU's user network a guest's
// connections are made by its QEMU process, so 10.0.2.2 (and fec0::2) in the guest is the host's loopback, and
// every other host address is one hop away; QEMU 7.2 cannot turn that off. Every QEMU Corral starts runs with
// the guests' group id, so the sockets QEMU opens carry it (`meta skgid`), and one output-hook chain rejects
// what those sockets send to an address of this host.
//
// One table serves every daemon on the host: chain `output` (rewritten whole, atomically, by each daemon at
// start: it depends only on the group id and /etc/resolv.conf, which the daemons share) and chain `allow`,
// which holds one `jump allow_ID` per daemon that allows services on purpose, `allow_ID` named after that
// daemon's state directory. A daemon only ever adds, replaces or removes its own jump and chain, so one
// daemon's start or stop never touches another's allowances; allowances are the union of every daemon's.
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import { formatHostAccess, type HostAccess } from "./host-access.ts";

export const WALL_TABLE = "corral_guard";
const TABLE = `inet ${WALL_TABLE}`;
const DISPATCH_CHAIN = "allow";

/**
 * Before destination NAT (-100) and after conntrack (-200): the rule judges the address the guest asked
 * for, so a host port published by DNAT (Docker's `-p 127.0.0.1:8080:80`) is walled off as well, and a
 * local resolver behind DNAT (Docker's 127.0.0.11) is still recognised as the resolver.
 */
const HOOK_PRIORITY = -150;

export interface WallBase {
  /** The guests' group: every Corral QEMU runs with it. */
  gid: number;
  /** The host's DNS resolvers (from /etc/resolv.conf): QEMU forwards the guest's DNS queries to them. */
  resolvers: readonly string[];
}

function family(address: string): "ip" | "ip6" {
  return address.includes(":") ? "ip6" : "ip";
}

/**
 * The table, its dispatch chain (kept as it is) and its output chain (replaced whole: deleting and adding it
 * again in the same transaction also updates an older daemon's hook priority). Packets pass unless all hold:
 * - the socket belongs to the guests' group (other programs on the host are not concerned);
 * - it is not a reply on a connection someone else opened (a host client talking to a VM's forwarded port
 *   gets its answers); untracked packets count as not a reply, so the wall fails closed;
 * - the destination is this host (any local address, loopback included, v4 and v6) or a broadcast or
 *   multicast address (which reach the host's own listeners);
 * - it is not DNS to the host's resolver, nor a service a daemon allows (chain `allow`).
 * TCP gets a reset and everything else an ICMP error, so the guest's connection fails at once.
 */
export function wallBaseScript(base: WallBase): string {
  const rule = (text: string): string => `add rule ${TABLE} output ${text}`;
  return [
    `add table ${TABLE}`,
    `add chain ${TABLE} ${DISPATCH_CHAIN}`,
    `add chain ${TABLE} output`,
    `flush chain ${TABLE} output`,
    `delete chain ${TABLE} output`,
    `add chain ${TABLE} output { type filter hook output priority ${HOOK_PRIORITY}; policy accept; }`,
    rule(`meta skgid != ${base.gid} return`),
    rule("ct direction reply return"),
    rule("fib daddr type != { local, broadcast, multicast } return"),
    ...base.resolvers.map((r) => rule(`${family(r)} daddr ${r} meta l4proto { tcp, udp } th dport 53 accept`)),
    rule(`jump ${DISPATCH_CHAIN}`),
    rule(`meta l4proto tcp reject with tcp reset comment "Corral guests may not reach this host's services"`),
    rule(`reject with icmpx type admin-prohibited comment "Corral guests may not reach this host's services"`),
    "",
  ].join("\n");
}

/** The chain holding the allowances of the daemon with this state directory. */
export function allowanceChain(stateDir: string): string {
  return `allow_${createHash("sha256").update(stateDir).digest("hex").slice(0, 12)}`;
}

/** A jump in the dispatch chain, as `nft -j` lists it; `owner` is the state directory in its comment. */
export interface AllowanceJump {
  handle: number;
  target: string;
  owner: string | undefined;
}

/** The state directory as the jump's comment, when nft can quote it (it is only used to find stale jumps). */
function ownerComment(stateDir: string): string {
  return /^[A-Za-z0-9_./@+:=-]{1,120}$/.test(stateDir) ? ` comment "${stateDir}"` : "";
}

function allowRule(chain: string, access: HostAccess): string {
  const [first, last] = access.ports;
  const ports = first === last ? String(first) : `${first}-${last}`;
  const address = access.address === undefined ? "" : `${family(access.address)} daddr ${access.address} `;
  return `add rule ${TABLE} ${chain} ${address}${access.protocol} dport ${ports} accept comment "${formatHostAccess(access)}"`;
}

/** Removes a daemon's jumps and its chain (adding the chain first makes the removal work whether or not it exists). */
function removal(chain: string, jumps: readonly AllowanceJump[]): string[] {
  return [
    ...jumps.filter((j) => j.target === chain).map((j) => `delete rule ${TABLE} ${DISPATCH_CHAIN} handle ${j.handle}`),
    `add chain ${TABLE} ${chain}`,
    `flush chain ${TABLE} ${chain}`,
    `delete chain ${TABLE} ${chain}`,
  ];
}

export interface AllowanceUpdate {
  stateDir: string;
  access: readonly HostAccess[];
  /** The dispatch chain's jumps now. */
  jumps: readonly AllowanceJump[];
  /** State directories of other daemons that no longer exist: their allowances go. */
  staleOwners: readonly string[];
}

/**
 * One transaction that gives this daemon's chain exactly its allowances, with one jump to it (none when it
 * allows nothing), and removes the allowances of daemons whose state directory is gone.
 */
export function allowanceScript(update: AllowanceUpdate): string {
  const own = allowanceChain(update.stateDir);
  const lines: string[] = [];
  for (const owner of update.staleOwners) {
    const chain = allowanceChain(owner);
    if (chain !== own) lines.push(...removal(chain, update.jumps));
  }
  if (update.access.length === 0) {
    lines.push(...removal(own, update.jumps));
  } else {
    lines.push(`add chain ${TABLE} ${own}`, `flush chain ${TABLE} ${own}`, ...update.access.map((a) => allowRule(own, a)));
    if (!update.jumps.some((j) => j.target === own)) lines.push(`add rule ${TABLE} ${DISPATCH_CHAIN} jump ${own}${ownerComment(update.stateDir)}`);
  }
  return `${lines.join("\n")}\n`;
}

/** The transaction a stopping daemon runs: its jump and its chain go. */
export function releaseScript(stateDir: string, jumps: readonly AllowanceJump[]): string {
  return `${removal(allowanceChain(stateDir), jumps).join("\n")}\n`;
}

/** The jumps of the dispatch chain, from `nft -j list chain inet corral_guard allow`. */
export function parseAllowanceJumps(json: string): AllowanceJump[] {
  const parsed = JSON.parse(json) as { nftables?: unknown[] };
  const jumps: AllowanceJump[] = [];
  for (const item of parsed.nftables ?? []) {
    const rule = (item as { rule?: { handle?: unknown; comment?: unknown; expr?: unknown[] } }).rule;
    if (!rule || typeof rule.handle !== "number") continue;
    for (const expr of rule.expr ?? []) {
      const target = (expr as { jump?: { target?: unknown } }).jump?.target;
      if (typeof target === "string") jumps.push({ handle: rule.handle, target, owner: typeof rule.comment === "string" ? rule.comment : undefined });
    }
  }
  return jumps;
}

/** The addresses of `nameserver` lines in resolv.conf text (an IPv6 zone is dropped: nft cannot say it). */
export function resolversOf(resolvConf: string): string[] {
  const found: string[] = [];
  for (const line of resolvConf.split("\n")) {
    const match = /^\s*nameserver\s+(\S+)/.exec(line);
    const address = match?.[1]?.split("%")[0]?.toLowerCase();
    if (address && isIP(address) !== 0 && !found.includes(address)) found.push(address);
  }
  return found;
}
