// The guest's resource snapshot, read from /proc and statfs when asked (nothing runs in between).
import { readFileSync, statfsSync } from "node:fs";
import { cpus, hostname, loadavg } from "node:os";
import { formatDuration } from "../protocol/duration.ts";
import { STATS_PATH, type VmSnapshot } from "../protocol/stats.ts";
import { sendJson } from "./http.ts";
import type { AgentRouter } from "./router.ts";

function read(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

/** /proc/meminfo values in bytes. */
export function parseMeminfo(text: string): Record<string, number> {
  const values: Record<string, number> = {};
  for (const line of text.split("\n")) {
    const match = /^(\w+):\s+(\d+)(?:\s+kB)?/.exec(line);
    if (match) values[match[1] as string] = Number(match[2]) * (line.includes("kB") ? 1024 : 1);
  }
  return values;
}

/** Bytes read and written and I/Os in flight, over whole disks (vda, not vda1) in /proc/diskstats. */
export function parseDiskstats(text: string): { read: number; written: number; inflight: number } {
  let read = 0;
  let written = 0;
  let inflight = 0;
  for (const line of text.split("\n")) {
    const f = line.trim().split(/\s+/);
    const name = f[2] ?? "";
    if (!/^(vd[a-z]+|sd[a-z]+|nvme\d+n\d+)$/.test(name)) continue;
    read += Number(f[5]) * 512;
    written += Number(f[9]) * 512;
    inflight += Number(f[11]);
  }
  return { read, written, inflight };
}

/** Bytes received and sent on every interface but loopback, from /proc/net/dev. */
export function parseNetDev(text: string): { received: number; sent: number } {
  let received = 0;
  let sent = 0;
  for (const line of text.split("\n").slice(2)) {
    const [name, rest] = line.split(":");
    if (!rest || name?.trim() === "lo") continue;
    const f = rest.trim().split(/\s+/);
    received += Number(f[0]);
    sent += Number(f[8]);
  }
  return { received, sent };
}

/** Established TCP connections in a /proc/net/tcp table (state 01). */
export function countEstablished(text: string): number {
  return text
    .split("\n")
    .slice(1)
    .filter((line) => line.trim().split(/\s+/)[3] === "01").length;
}

export function snapshot(): VmSnapshot {
  const mem = parseMeminfo(read("/proc/meminfo"));
  const totalMemory = mem.MemTotal ?? 0;
  const memoryAvailable = mem.MemAvailable ?? 0;
  const memoryUsed = totalMemory - memoryAvailable;
  const disk = parseDiskstats(read("/proc/diskstats"));
  const net = parseNetDev(read("/proc/net/dev"));
  const [load1, load5, load15] = loadavg();
  let diskSpaceTotal = 0;
  let diskSpaceFree = 0;
  let diskSpaceUsed = 0;
  try {
    const fs = statfsSync("/");
    diskSpaceTotal = fs.blocks * fs.bsize;
    diskSpaceFree = fs.bavail * fs.bsize;
    diskSpaceUsed = (fs.blocks - fs.bfree) * fs.bsize;
  } catch {
    // no root filesystem statistics: report zeros
  }
  const uptimeSeconds = Number(read("/proc/uptime").split(" ")[0]) || 0;
  return {
    hostname: hostname(),
    arch: process.arch === "x64" ? "x86_64" : process.arch,
    timestamp: new Date().toISOString(),
    uptime: formatDuration(Math.floor(uptimeSeconds) * 1000),
    totalCpus: cpus().length,
    totalMemory,
    memoryUsed,
    memoryAvailable,
    memoryUsedPercent: totalMemory > 0 ? (memoryUsed / totalMemory) * 100 : 0,
    loadAvg1: load1 ?? 0,
    loadAvg5: load5 ?? 0,
    loadAvg15: load15 ?? 0,
    diskReadTotal: disk.read,
    diskWriteTotal: disk.written,
    networkReadTotal: net.received,
    networkWriteTotal: net.sent,
    diskIOInflight: disk.inflight,
    openConnections: countEstablished(read("/proc/net/tcp")) + countEstablished(read("/proc/net/tcp6")),
    openFiles: Number(read("/proc/sys/fs/file-nr").split(/\s+/)[0]) || 0,
    entropy: Number(read("/proc/sys/kernel/random/entropy_avail").trim()) || 0,
    diskSpaceTotal,
    diskSpaceUsed,
    diskSpaceFree,
    diskSpaceUsedPercent: diskSpaceTotal > 0 ? (diskSpaceUsed / diskSpaceTotal) * 100 : 0,
  };
}

export function registerStatsRoutes(router: AgentRouter): void {
  router.add("GET", STATS_PATH, ({ stream }) => sendJson(stream, 200, snapshot()));
}
