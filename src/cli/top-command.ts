// `corral vm top`: every VM's load, memory, disk and network, refreshed until Ctrl-C (or once with --once).
import type { Command } from "commander";
import type { NodeStat } from "../sdk/index.ts";
import { addConnectionOptions, clientFor, type ConnectionFlags } from "./connection.ts";
import { action, formatBytes, printJson, printTable } from "./output.ts";

function percent(value: number): string {
  return `${value.toFixed(0)}%`;
}

export function topRows(stats: readonly NodeStat[]): string[][] {
  return stats.map((s) => {
    const snap = s.snapshot;
    if (!snap) return [s.hostname, "-", "-", "-", "-", "-", "-", (s.error ?? "no data").slice(0, 60)];
    return [
      s.hostname,
      snap.loadAvg1.toFixed(2),
      `${formatBytes(snap.memoryUsed)}/${formatBytes(snap.totalMemory)} ${percent(snap.memoryUsedPercent)}`,
      `${formatBytes(snap.diskSpaceUsed)} ${percent(snap.diskSpaceUsedPercent)}`,
      `${formatBytes(snap.diskReadTotal)}/${formatBytes(snap.diskWriteTotal)}`,
      `${formatBytes(snap.networkReadTotal)}/${formatBytes(snap.networkWriteTotal)}`,
      String(snap.openConnections),
      snap.uptime,
    ];
  });
}

const HEADERS = ["HOSTNAME", "LOAD1", "MEMORY", "DISK USED", "DISK R/W", "NET RX/TX", "CONNS", "UPTIME"];

export function registerTopCommand(vm: Command): void {
  addConnectionOptions(vm.command("top").description("Show every VM's load, memory, disk and network, refreshed"))
    .option("--once", "print once and exit")
    .option("-n, --interval <seconds>", "refresh interval", "2")
    .option("--json", "print the stats as JSON once")
    .action(
      action(async (flags: ConnectionFlags & { once?: boolean; interval: string; json?: boolean }) => {
        const client = clientFor(flags);
        try {
          for (;;) {
            const stats = await client.stats();
            if (flags.json) return printJson(stats);
            if (!flags.once) process.stdout.write("\x1b[2J\x1b[H");
            if (stats.length === 0) process.stdout.write("No VMs.\n");
            else printTable(HEADERS, topRows(stats));
            if (flags.once) return;
            await new Promise((resolve) => setTimeout(resolve, Math.max(0.5, Number(flags.interval) || 2) * 1000));
          }
        } finally {
          await client.close();
        }
      }),
    );
}
