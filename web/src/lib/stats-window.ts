// A rolling window of a VM's live stats (the /ws `vm-stats-updated` messages) and the rates drawn from it:
// CPU % from cpu_time deltas, bytes/s for disks and network from their counters. Pure: samples in, points out.
import type { VmStats } from "../../../src/protocol/ttstack-agent.ts";

export const DEFAULT_WINDOW_MS = 5 * 60 * 1000;
/** Two samples further apart than this are not joined: the chart shows a gap instead of a made-up rate. */
export const DEFAULT_MAX_GAP_MS = 15 * 1000;
/** A bound on memory whatever the sample rate. */
const MAX_SAMPLES = 2000;

export interface StatsSample {
  /** When the sample arrived, ms since the epoch. */
  at: number;
  stats: VmStats;
}

export interface StatsWindow {
  readonly windowMs: number;
  readonly maxGapMs: number;
  readonly samples: readonly StatsSample[];
}

/** One point per sample. A rate is null where it cannot be told: the first sample, a gap, a counter reset. */
export interface StatsPoint {
  at: number;
  /** CPU of the VM's QEMU process as % of its vCPUs (may pass 100 under emulation overhead). */
  cpuPercent: number | null;
  memUsedMiB: number;
  memTotalMiB: number;
  diskReadBps: number | null;
  diskWriteBps: number | null;
  netRxBps: number | null;
  netTxBps: number | null;
}

export function emptyWindow(windowMs = DEFAULT_WINDOW_MS, maxGapMs = DEFAULT_MAX_GAP_MS): StatsWindow {
  return { windowMs, maxGapMs, samples: [] };
}

/**
 * The window with `sample` added and samples older than `windowMs` before it dropped. A sample older than
 * the newest one is ignored (messages out of order); one at the same time replaces it.
 */
export function addSample(window: StatsWindow, sample: StatsSample): StatsWindow {
  const last = window.samples.at(-1);
  if (last && sample.at < last.at) return window;
  const kept = last && sample.at === last.at ? window.samples.slice(0, -1) : window.samples;
  const cutoff = sample.at - window.windowMs;
  const start = kept.findIndex((s) => s.at >= cutoff);
  const inWindow = start === -1 ? [] : kept.slice(start);
  const samples = [...inWindow, sample].slice(-MAX_SAMPLES);
  return { ...window, samples };
}

/** Drops samples older than `windowMs` before `now` (for a window that stopped receiving). */
export function trimWindow(window: StatsWindow, now: number): StatsWindow {
  const cutoff = now - window.windowMs;
  const first = window.samples.findIndex((s) => s.at >= cutoff);
  if (first === 0) return window;
  return { ...window, samples: first === -1 ? [] : window.samples.slice(first) };
}

interface Totals {
  cpuNs: number;
  diskRead: number;
  diskWrite: number;
  netRx: number;
  netTx: number;
}

function totals(stats: VmStats): Totals {
  const sum = (list: readonly { read_bytes: number; write_bytes: number }[], key: "read_bytes" | "write_bytes"): number => list.reduce((n, d) => n + d[key], 0);
  return {
    cpuNs: stats.cpu_time,
    diskRead: sum(stats.disk_stats, "read_bytes"),
    diskWrite: sum(stats.disk_stats, "write_bytes"),
    netRx: sum(stats.net_stats, "read_bytes"),
    netTx: sum(stats.net_stats, "write_bytes"),
  };
}

/** Per second between two counter readings; null when the counter went back (a restart) or time did not move. */
function rate(previous: number, current: number, seconds: number): number | null {
  if (seconds <= 0 || current < previous) return null;
  return (current - previous) / seconds;
}

export function statsPoints(window: StatsWindow): StatsPoint[] {
  const points: StatsPoint[] = [];
  let before: { at: number; totals: Totals } | undefined;
  for (const sample of window.samples) {
    const now = totals(sample.stats);
    const previous = before !== undefined && sample.at - before.at <= window.maxGapMs ? before.totals : undefined;
    const seconds = before === undefined ? 0 : (sample.at - before.at) / 1000;
    const per = (key: keyof Totals): number | null => (previous === undefined ? null : rate(previous[key], now[key], seconds));
    const cpuNsPerSecond = per("cpuNs");
    points.push({
      at: sample.at,
      cpuPercent: cpuNsPerSecond === null ? null : (cpuNsPerSecond / 1e9 / Math.max(1, sample.stats.vcpu)) * 100,
      memUsedMiB: sample.stats.memory / 1024,
      memTotalMiB: sample.stats.max_mem / 1024,
      diskReadBps: per("diskRead"),
      diskWriteBps: per("diskWrite"),
      netRxBps: per("netRx"),
      netTxBps: per("netTx"),
    });
    before = { at: sample.at, totals: now };
  }
  return points;
}
