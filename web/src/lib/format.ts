// Numbers as the dashboard prints them: sizes in MiB/GiB, rates in B/s, percentages, times.

export function formatMiB(mib: number): string {
  if (!Number.isFinite(mib)) return "–";
  if (Math.abs(mib) >= 1024 * 1024) return `${trim(mib / (1024 * 1024))} TiB`;
  if (Math.abs(mib) >= 1024) return `${trim(mib / 1024)} GiB`;
  return `${Math.round(mib)} MiB`;
}

const RATE_UNITS = ["B/s", "KiB/s", "MiB/s", "GiB/s"] as const;

export function formatRate(bytesPerSecond: number | null | undefined): string {
  if (bytesPerSecond === null || bytesPerSecond === undefined || !Number.isFinite(bytesPerSecond)) return "–";
  let value = bytesPerSecond;
  let unit = 0;
  while (value >= 1024 && unit < RATE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? Math.round(value) : trim(value)} ${RATE_UNITS[unit]}`;
}

export function formatPercent(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return `${value < 10 ? value.toFixed(1) : Math.round(value)}%`;
}

/** `part` of `total` as 0..100; 0 when the total is 0. */
export function percentOf(part: number, total: number): number {
  return total > 0 ? Math.min(100, Math.max(0, (part / total) * 100)) : 0;
}

/** A time: RFC 3339 text, or Unix seconds as TTstack's answers give them. */
export function formatTime(when: string | number): string {
  const date = new Date(typeof when === "number" ? when * 1000 : when);
  return Number.isNaN(date.getTime()) ? "–" : date.toLocaleString();
}

export function formatClock(ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function trim(value: number): string {
  return value >= 100 ? String(Math.round(value)) : value.toFixed(1).replace(/\.0$/, "");
}
