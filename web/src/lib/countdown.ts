// Time left until an environment expires, as the dashboard shows it: "2d 03h", "1h 02m", "4m 05s", "45s",
// "expired". Pure, so the ticking component and the tests share it.

export type Urgency = "ok" | "soon" | "expired";

/** Under this many seconds left, the countdown is shown as urgent. */
export const SOON_SECONDS = 5 * 60;

/** Whole seconds from `now` (ms since the epoch) until `expiresAt`; negative once past; NaN for a bad date. */
export function secondsLeft(expiresAt: string | number | Date, now: number): number {
  const end = expiresAt instanceof Date ? expiresAt.getTime() : typeof expiresAt === "number" ? expiresAt : Date.parse(expiresAt);
  if (!Number.isFinite(end) || !Number.isFinite(now)) return Number.NaN;
  return Math.floor((end - now) / 1000);
}

const pad = (n: number): string => String(n).padStart(2, "0");

export function formatSecondsLeft(seconds: number): string {
  if (Number.isNaN(seconds)) return "unknown";
  if (seconds <= 0) return "expired";
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const secs = seconds % 60;
  if (days > 0) return `${days}d ${pad(hours)}h`;
  if (hours > 0) return `${hours}h ${pad(minutes)}m`;
  if (minutes > 0) return `${minutes}m ${pad(secs)}s`;
  return `${secs}s`;
}

export function urgency(seconds: number): Urgency {
  if (Number.isNaN(seconds)) return "ok";
  if (seconds <= 0) return "expired";
  return seconds < SOON_SECONDS ? "soon" : "ok";
}

export function formatTimeLeft(expiresAt: string | number | Date, now: number): string {
  return formatSecondsLeft(secondsLeft(expiresAt, now));
}
