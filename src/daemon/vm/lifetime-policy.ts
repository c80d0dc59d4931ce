// Which lifetime a sandbox gets and how far it may be extended, from its host group's `lifetime` (the
// default) and `max_lifetime` (a bound on the whole life, counted from creation). Services are the daemon's
// to keep running and never get one; nor do VMs made through TTstack's API by default (their controller
// decides when they go).
import { CorralError } from "../../protocol/errors.ts";
import { formatLifetime } from "../../protocol/lifetime.ts";
import type { HostGroupConfig } from "../config.ts";
import type { VmRecord } from "./vm-store.ts";

/**
 * The lifetime of a new sandbox (ms, null: none): the one asked for, else the group's default, else its
 * maximum (a group with a maximum has no sandbox without an end). More than the maximum is refused.
 */
export function newSandboxLifetime(group: HostGroupConfig, requestedMs: number | undefined): number | null {
  if (requestedMs !== undefined && group.maxLifetimeMs !== null && requestedMs > group.maxLifetimeMs) {
    throw new CorralError(
      "invalid_duration",
      `Invalid lifetime ${JSON.stringify(formatLifetime(requestedMs))}: host group "${group.name}" allows at most ${JSON.stringify(formatLifetime(group.maxLifetimeMs))} (its max_lifetime)`,
    );
  }
  return requestedMs ?? group.lifetimeMs ?? group.maxLifetimeMs;
}

/**
 * When `record` expires if it is given `lifetimeMs` more from `now` (null: no end). Refused for services,
 * and past the group's maximum counted from the VM's creation.
 */
export function extendedExpiry(group: HostGroupConfig, record: VmRecord, lifetimeMs: number | null, now: Date): Date | null {
  if (record.kind === "service") {
    throw new CorralError(
      "invalid_request",
      `Invalid lifetime: VM ${JSON.stringify(record.hostname)} is a service of host group "${group.name}", which the daemon keeps running (change its configuration instead)`,
    );
  }
  const max = group.maxLifetimeMs;
  if (lifetimeMs === null) {
    if (max !== null) {
      throw new CorralError(
        "invalid_duration",
        `Invalid lifetime null: sandboxes of host group "${group.name}" must end within ${JSON.stringify(formatLifetime(max))} of their creation (its max_lifetime)`,
      );
    }
    return null;
  }
  const expiresAt = new Date(now.getTime() + lifetimeMs);
  if (max !== null) {
    const latest = new Date(Date.parse(record.createdAt) + max);
    if (expiresAt > latest) {
      throw new CorralError(
        "invalid_duration",
        `Invalid lifetime ${JSON.stringify(formatLifetime(lifetimeMs))}: VM ${JSON.stringify(record.hostname)} may live until ${latest.toISOString()} at most (host group "${group.name}" has max_lifetime ${JSON.stringify(formatLifetime(max))})`,
      );
    }
  }
  return expiresAt;
}
