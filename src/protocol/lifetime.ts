// Sandbox lifetimes: how long a sandbox may live before the daemon deletes it. Given as a Go duration
// ("30m", "1h30m") or a number of seconds (E2B's and TTstack's unit), from a request body or the config.
import { formatHours, parseDuration } from "./duration.ts";
import { CorralError, quote } from "./errors.ts";

/** The longest lifetime anything may ask for: 30 days, as the controller's environments. */
export const MAX_LIFETIME_MS = 30 * 24 * 3_600_000;
/** The shortest: a second (zero would mean "already expired"). */
export const MIN_LIFETIME_MS = 1000;

/**
 * Milliseconds of a lifetime given as a duration string or seconds; `invalid_duration` naming `field`
 * (e.g. `body field "lifetime"`) for anything else, zero, negative, under a second or over 30 days.
 */
export function parseLifetime(value: unknown, field = "lifetime"): number {
  let ms: number;
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value < 0) {
      throw new CorralError("invalid_duration", `Invalid ${field} ${quote(value)}: give a positive number of seconds or a duration such as "30m"`);
    }
    ms = Math.round(value * 1000);
  } else if (typeof value === "string") {
    ms = parseDuration(value, field, MAX_LIFETIME_MS);
  } else {
    throw new CorralError("invalid_duration", `Invalid ${field} ${quote(value)}: give a duration such as "30m" or a number of seconds`);
  }
  if (ms < MIN_LIFETIME_MS) throw new CorralError("invalid_duration", `Invalid ${field} ${quote(value)}: a lifetime must be at least "1s"`);
  if (ms > MAX_LIFETIME_MS) throw new CorralError("invalid_duration", `Invalid ${field} ${quote(value)}: the longest allowed is ${formatHours(MAX_LIFETIME_MS)}`);
  return ms;
}

/** A lifetime as people write it: "1h30m", "45s", "10m" (whole seconds, zero parts left out). */
export function formatLifetime(ms: number): string {
  const total = Math.round(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const text = `${h > 0 ? `${h}h` : ""}${m > 0 ? `${m}m` : ""}${s > 0 ? `${s}s` : ""}`;
  return text || "0s";
}
