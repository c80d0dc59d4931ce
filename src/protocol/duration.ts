// Go-style durations ("500ms", "30s", "5m", "1h30m"), as Slicer's `?timeout=` takes them.
import { CorralError } from "./errors.ts";

// Go accepts both the micro sign (U+00B5) and the Greek mu (U+03BC) for microseconds.
const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, "\u00b5s": 1e-3, "\u03bcs": 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const TERM = /(\d+(?:\.\d+)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)/gy;

/** Longest wait any request may ask for: a day. */
export const MAX_DURATION_MS = 24 * 3_600_000;

/**
 * Parses a Go duration into milliseconds. A bare number is taken as seconds (a convenience Go lacks).
 * Throws `invalid_duration` naming the field for anything else, negative values included, and for more
 * than `maxMs`.
 */
export function parseDuration(text: string, field = "timeout", maxMs = MAX_DURATION_MS): number {
  const value = text.trim();
  let ms: number | undefined;
  if (/^\d+(\.\d+)?$/.test(value)) {
    ms = Number(value) * 1000;
  } else if (value.length > 0) {
    TERM.lastIndex = 0;
    let total = 0;
    let consumed = 0;
    for (let m = TERM.exec(value); m !== null; m = TERM.exec(value)) {
      total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
      consumed = TERM.lastIndex;
    }
    if (consumed === value.length) ms = total;
  }
  if (ms === undefined || !Number.isFinite(ms)) {
    throw new CorralError("invalid_duration", `Invalid ${field} ${JSON.stringify(text)}: use a duration such as "30s", "500ms" or "2m"`);
  }
  if (ms > maxMs) {
    throw new CorralError("invalid_duration", `Invalid ${field} ${JSON.stringify(text)}: the longest allowed is ${formatHours(maxMs)}`);
  }
  return Math.round(ms);
}

/** Formats milliseconds the way Go prints a duration, e.g. 95000 -> "1m35s", 1500 -> "1.5s", 0 -> "0s". */
export function formatDuration(ms: number): string {
  if (ms === 0) return "0s";
  if (ms < 1000) return `${Math.round(ms * 1000) / 1000}ms`;
  const h = Math.floor(ms / 3_600_000);
  const m = Math.floor((ms - h * 3_600_000) / 60_000);
  const seconds = (ms - h * 3_600_000 - m * 60_000) / 1000;
  return `${h > 0 ? `${h}h` : ""}${h > 0 || m > 0 ? `${m}m` : ""}${Math.round(seconds * 1000) / 1000}s`;
}

/** A limit as people write it: whole hours as "24h", anything else as Go prints it. */
export function formatHours(ms: number): string {
  return ms > 0 && ms % 3_600_000 === 0 ? `${ms / 3_600_000}h` : formatDuration(ms);
}
