// Egress policy (Slicer's `drop`/`allow`): parsing lists of entries with problems that name the field.
// Merging a host group's lists with a VM's override and turning a policy into nftables statements live
// beside this (see the rules modules).
import { isProblem, parseEgressEntry, type EgressEntry, type Parsed } from "./cidr.ts";
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
