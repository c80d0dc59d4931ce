// Printing for people (aligned tables) and for scripts (--json).
import { CorralApiError } from "../sdk/transport.ts";

/** Commander's accumulator for repeatable options. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

export function printTable(headers: readonly string[], rows: readonly (readonly string[])[]): void {
  if (rows.length === 0) return;
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  ");
  process.stdout.write(`${line(headers)}\n${rows.map(line).join("\n")}\n`);
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}

/** "512M", "2G", "1.5GiB", "1073741824" -> bytes. */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  if (!match) throw new Error(`Invalid size ${JSON.stringify(text)}: use e.g. 512M, 2G or a number of bytes`);
  const power = { "": 0, k: 1, m: 2, g: 3, t: 4 }[(match[2] ?? "").toLowerCase()] ?? 0;
  return Math.round(Number(match[1]) * 1024 ** power);
}

/** Runs a command action, turning API and usage errors into one line on stderr and exit code 1. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      if (err instanceof CorralApiError) {
        process.stderr.write(`corral: ${err.message} (${err.status} ${err.code})\n`);
      } else if ((err as NodeJS.ErrnoException).code === "ECONNREFUSED" || (err as NodeJS.ErrnoException).code === "ENOENT") {
        process.stderr.write(`corral: cannot reach the daemon (${(err as Error).message}): is it running? Start it with ./corral up\n`);
      } else {
        process.stderr.write(`corral: ${(err as Error).message}\n`);
      }
      process.exitCode = 1;
    }
  };
}
