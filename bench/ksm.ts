// Memory merging (config `ksm: true`) against the same daemon without it, in one run: a daemon's group of
// template clones (1 vCPU / 512 MiB) gets N idle sandboxes with ksm off, then, after a restart with ksm on,
// N again; with merging on the bench waits until ksmd's count of shared pages stops growing. Reported per
// idle VM: PSS (shared pages divided among their users), exec round trip, host CPU; and ksmd's own CPU.
// ksmd's scan rate is the host's (pages_to_scan, sleep_millisecs) unless CORRAL_BENCH_KSM_PAGES_TO_SCAN sets
// pages_to_scan for the run; run and pages_to_scan are put back afterwards.
//   node --import tsx bench/ksm.ts          (CORRAL_BENCH_KSM_VMS, default 20)
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { KSM_DIR, ksmPagesSharing } from "../src/engine/qemu/memory-merge.ts";
import type { CorralClient } from "../src/sdk/index.ts";
import { ms, percentile, ratio, table } from "./stats.ts";
import { cpuTicks, pssKiB, qemuPidsOf } from "./templates.ts";

export const KSM_BENCH_HEADERS = ["memory merging, idle template clones", "ksm off", "ksm on", "on/off"] as const;

const CLOCK_TICKS = 100;

interface KsmSide {
  pssMiBPerVm: number;
  execP50Ms: number;
  cpuPercentPerVm: number;
  ksmdCpuPercent: number;
  sharingMiB: number;
  settleSeconds: number;
}

function ksmdPid(): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, "utf8").trim() === "ksmd") return Number(entry);
    } catch {
      // gone
    }
  }
  return undefined;
}

/**
 * Waits until ksmd's shared pages grew by under 1% in the last 30 s, after at least a minute (ksmd merges a
 * page on its second pass at the earliest, and newer kernels' smart scan revisits pages that did not merge
 * less often, so growth is slow and late), at most `limitMs`; returns the seconds waited.
 */
async function ksmSettled(limitMs: number): Promise<number> {
  const started = performance.now();
  const samples: number[] = [];
  for (;;) {
    await sleep(5000);
    samples.push(ksmPagesSharing() ?? 0);
    const elapsed = performance.now() - started;
    const before = samples.at(-7);
    if (elapsed >= limitMs) break;
    if (elapsed >= 60_000 && before !== undefined && (samples.at(-1) ?? 0) <= before * 1.01) break;
  }
  return (performance.now() - started) / 1000;
}

async function measureSide(client: CorralClient, group: string, stateDir: string, vms: number, merging: boolean, log: (line: string) => void): Promise<KsmSide> {
  const names: string[] = [];
  try {
    for (let i = 0; i < vms; i++) names.push((await client.createNode(group, {}, { wait: "agent", timeout: "300s" })).hostname);
    await sleep(5000);
    const settleSeconds = merging ? await ksmSettled(600_000) : 0;
    const pids = qemuPidsOf(stateDir);
    const ksmd = ksmdPid();
    const before = pids.reduce((sum, pid) => sum + cpuTicks(pid), 0);
    const ksmdBefore = ksmd === undefined ? 0 : cpuTicks(ksmd);
    const window = 10;
    await sleep(window * 1000);
    const cpu = pids.reduce((sum, pid) => sum + cpuTicks(pid), 0) - before;
    const ksmdCpu = ksmd === undefined ? 0 : cpuTicks(ksmd) - ksmdBefore;
    const execs: number[] = [];
    for (let i = 0; i < 10; i++) {
      const started = performance.now();
      await client.execBuffered(names[i % names.length] as string, { cmd: "true" });
      execs.push(performance.now() - started);
    }
    const side: KsmSide = {
      pssMiBPerVm: pids.reduce((sum, pid) => sum + pssKiB(pid), 0) / 1024 / pids.length,
      execP50Ms: percentile(execs, 50),
      cpuPercentPerVm: (cpu / CLOCK_TICKS / window / pids.length) * 100,
      ksmdCpuPercent: (ksmdCpu / CLOCK_TICKS / window) * 100,
      sharingMiB: ((ksmPagesSharing() ?? 0) * 4096) / 1024 / 1024,
      settleSeconds,
    };
    log(
      `  ksm ${merging ? "on" : "off"}: ${pids.length} VMs, PSS ${side.pssMiBPerVm.toFixed(1)} MiB/VM, exec p50 ${ms(side.execP50Ms)}, ` +
        `CPU ${side.cpuPercentPerVm.toFixed(2)}%/VM, ksmd ${side.ksmdCpuPercent.toFixed(1)}%, sharing ${side.sharingMiB.toFixed(0)} MiB` +
        (merging ? ` (settled after ${side.settleSeconds.toFixed(0)} s)` : ""),
    );
    return side;
  } finally {
    for (const name of names) await client.deleteNode(group, name).catch(() => undefined);
  }
}

export interface KsmBenchDaemon {
  client: CorralClient;
  stateDir: string;
  /** Restarts the daemon with `ksm` set as given. */
  restartWith(ksm: boolean): Promise<CorralClient>;
}

export async function runKsmBench(daemon: KsmBenchDaemon, group: string, vms: number, log: (line: string) => void): Promise<string[][]> {
  const runBefore = readFileSync(`${KSM_DIR}/run`, "utf8").trim();
  const scanBefore = readFileSync(`${KSM_DIR}/pages_to_scan`, "utf8").trim();
  const scan = process.env.CORRAL_BENCH_KSM_PAGES_TO_SCAN;
  try {
    if (scan) writeFileSync(`${KSM_DIR}/pages_to_scan`, scan);
    log(`ksm: pages_to_scan ${readFileSync(`${KSM_DIR}/pages_to_scan`, "utf8").trim()} every ${readFileSync(`${KSM_DIR}/sleep_millisecs`, "utf8").trim()} ms`);
    // Unmerged and stopped: the "off" side must not carry pages an earlier run merged.
    writeFileSync(`${KSM_DIR}/run`, "2");
    writeFileSync(`${KSM_DIR}/run`, "0");
    const off = await measureSide(await daemon.restartWith(false), group, daemon.stateDir, vms, false, log);
    const on = await measureSide(await daemon.restartWith(true), group, daemon.stateDir, vms, true, log);
    return [
      [`PSS per idle VM (${vms} VMs)`, `${off.pssMiBPerVm.toFixed(1)} MiB`, `${on.pssMiBPerVm.toFixed(1)} MiB`, ratio(on.pssMiBPerVm, off.pssMiBPerVm)],
      ["exec round trip, p50", ms(off.execP50Ms), ms(on.execP50Ms), ratio(on.execP50Ms, off.execP50Ms)],
      ["host CPU per idle VM", `${off.cpuPercentPerVm.toFixed(2)} %`, `${on.cpuPercentPerVm.toFixed(2)} %`, ratio(on.cpuPercentPerVm, off.cpuPercentPerVm)],
      ["ksmd CPU (a core's %)", `${off.ksmdCpuPercent.toFixed(1)} %`, `${on.ksmdCpuPercent.toFixed(1)} %`, "-"],
      ["memory KSM shares (host)", `${off.sharingMiB.toFixed(0)} MiB`, `${on.sharingMiB.toFixed(0)} MiB`, "-"],
      ["until ksmd settled", "-", `${on.settleSeconds.toFixed(0)} s`, "-"],
    ];
  } finally {
    // Left running if it ran; else what this run merged is unmerged (2, done within the write) and the
    // setting put back.
    writeFileSync(`${KSM_DIR}/pages_to_scan`, scanBefore);
    if (runBefore === "1") writeFileSync(`${KSM_DIR}/run`, "1");
    else {
      writeFileSync(`${KSM_DIR}/run`, "2");
      writeFileSync(`${KSM_DIR}/run`, runBefore);
    }
  }
}

/** The KSM part of `npm run bench`, on a daemon of its own; undefined (and said) on a kernel without KSM. */
export async function runKsmBenchOnOwnDaemon(vms: number, log: (line: string) => void): Promise<string | undefined> {
  if (!existsSync(`${KSM_DIR}/run`)) {
    log("ksm: skipped, this kernel has no KSM");
    return undefined;
  }
  const { runSetup } = await import("../src/setup/setup.ts");
  const { silentProgress } = await import("../src/image/index.ts");
  const { TestDaemon } = await import("../test/helpers/daemon-process.ts");
  await runSetup(silentProgress);
  const config = (ksm: boolean): string => `config:\n  ksm: ${ksm}\n  host_groups:\n    - name: bench\n      image: base\n      vcpu: 1\n      ram_mb: 512\n`;
  const daemon = await TestDaemon.create(config(false));
  await daemon.start();
  try {
    const rows = await runKsmBench(
      {
        client: daemon.client,
        stateDir: daemon.stateDir,
        async restartWith(ksm) {
          await daemon.stop();
          await daemon.reconfigure(config(ksm));
          await daemon.start();
          for (;;) {
            if ((await daemon.client.templates()).find((t) => t.hostgroup === "bench")?.state === "ready") return daemon.client;
            await sleep(500);
          }
        },
      },
      "bench",
      vms,
      log,
    );
    return table([...KSM_BENCH_HEADERS], rows);
  } finally {
    await daemon.dispose();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const report = await runKsmBenchOnOwnDaemon(Number(process.env.CORRAL_BENCH_KSM_VMS ?? 20), (line) => process.stderr.write(`${line}\n`));
  if (report) process.stdout.write(`\n${report}\n`);
}
