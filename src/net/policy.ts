// Egress policy (Slicer's `drop`/`allow`): parsing lists of entries with problems that name the field.
// Merging a host group's lists with a VM's override and turning a policy into nftables statements live
// beside this (see the rules modules).
import { formatCidr, isProblem, parseEgressEntry, type Cidr, type EgressEntry, type Parsed } from "./cidr.ts";
import type { EgressPolicy } from "./network-config.ts";

/** A VM's override of its host group's lists: an absent list inherits, `[]` clears (Slicer's fork policy). */
export interface PolicyOverride {
  readonly allow?: readonly EgressEntry[];
  readonly drop?: readonly EgressEntry[];
}

/** Parses one list; `path` names it in problems (`config.host_groups[1].network.allow`, `body field "network.drop"`). */
export function parseEgressList(entries: readonly string[], path: string): Parsed<EgressEntry[]> {
  const parsed: EgressEntry[] = [];
  for (const [index, text] of entries.entries()) {
    const entry = parseEgressEntry(text);
    if (isProblem(entry)) return { problem: `${path}[${index}] ${entry.problem}` };
    parsed.push(entry);
  }
  return parsed;
}

/** Both lists of a policy; absent lists stay absent (see PolicyOverride). */
export function parsePolicyOverride(lists: { allow?: readonly string[] | null; drop?: readonly string[] | null }, path: string): Parsed<PolicyOverride> {
  const result: { allow?: EgressEntry[]; drop?: EgressEntry[] } = {};
  for (const key of ["allow", "drop"] as const) {
    const list = lists[key];
    if (list === undefined || list === null) continue;
    const parsed = parseEgressList(list, `${path}.${key}`);
    if (isProblem(parsed)) return parsed;
    result[key] = parsed;
  }
  return result;
}

export const EMPTY_POLICY: EgressPolicy = Object.freeze({ allow: Object.freeze([]), drop: Object.freeze([]) });

/** The policy a VM runs under: each list of its override replaces the group's; absent ones inherit. */
export function mergePolicy(group: EgressPolicy, override: PolicyOverride | undefined): EgressPolicy {
  return { allow: override?.allow ?? group.allow, drop: override?.drop ?? group.drop };
}

/** Slicer's defaults: only `allow` given → the rest is dropped; otherwise the rest is allowed. */
export function defaultVerdict(policy: EgressPolicy): "accept" | "drop" {
  return policy.allow.length > 0 && policy.drop.length === 0 ? "drop" : "accept";
}

interface RankedEntry {
  entry: EgressEntry;
  verdict: "accept" | "drop";
  /** A drop the policy did not write (the metadata service, the VM's own /30 block): see `guarded`. */
  guard?: true;
}

/** The cloud metadata address: dropped unless an allow entry names it (a /32, with or without a port). */
export const METADATA_ADDRESS = "169.254.169.254";
export const METADATA_CIDR: Cidr = Object.freeze({ network: 0xa9fea9fe, prefixLength: 32 });

/**
 * Rank of an entry: longer prefix first; at the same prefix, an entry with a port before one without, and
 * `drop` before `allow` on an exact tie. A guard ranks just below every written entry of its own prefix, so
 * only an entry at least as specific as the guard (`allow: ["169.254.169.254/32"]`) gets past it, while a
 * broad one (`allow: ["0.0.0.0/0"]`, `allow: ["169.254.0.0/16"]`) does not.
 */
function rankOf(r: RankedEntry): number {
  if (r.guard) return r.entry.cidr.prefixLength * 4 - 0.5;
  return r.entry.cidr.prefixLength * 4 + (r.entry.port !== undefined ? 2 : 0) + (r.verdict === "drop" ? 1 : 0);
}

/**
 * The entries in the order they are judged: the more specific first (longer prefix; with a port before
 * without), `drop` before `allow` on a tie. So `drop: [0.0.0.0/0], allow: [192.168.222.1:3128]` lets only the
 * proxy through, and `drop: [192.168.1.0/24], allow: [0.0.0.0/0]` blocks the LAN and allows the rest.
 * `guarded` CIDRs become drops that only a written entry of the same or a longer prefix overrides. The sort is
 * stable: entries of equal rank keep the order they were written in.
 */
export function orderedEntries(policy: EgressPolicy, guarded: readonly Cidr[] = []): RankedEntry[] {
  const ranked: RankedEntry[] = [
    ...policy.drop.map((entry) => ({ entry, verdict: "drop" as const })),
    ...policy.allow.map((entry) => ({ entry, verdict: "accept" as const })),
    ...guarded.map((cidr) => ({ entry: { cidr, port: undefined, text: formatCidr(cidr) }, verdict: "drop" as const, guard: true as const })),
  ];
  return ranked.sort((a, b) => rankOf(b) - rankOf(a));
}

export interface EgressOptions {
  /** TTstack's deny_outgoing: the VM opens no connection at all (`ct state new drop` first). */
  readonly denyOutgoing: boolean;
  /** Addresses dropped unless an entry at least as specific names them (METADATA_CIDR, a VM's own block). */
  readonly guarded?: readonly Cidr[];
}

/**
 * nftables statements (one per element, no trailing "}") that judge a packet a VM sends to open a
 * connection: `ct state new drop` first under deny_outgoing, then the entries, then the default verdict.
 */
export function egressStatements(policy: EgressPolicy, options: EgressOptions): string[] {
  const lines: string[] = [];
  if (options.denyOutgoing) lines.push("ct state new drop");
  for (const { entry, verdict } of orderedEntries(policy, options.guarded)) {
    const address = `${formatCidr(entry.cidr)}`;
    const port = entry.port === undefined ? "" : ` meta l4proto { tcp, udp } th dport ${entry.port}`;
    lines.push(`ip daddr ${address}${port} ${verdict}`);
  }
  lines.push(defaultVerdict(policy));
  return lines;
}
