// Creation from template snapshots, and how many idle sandboxes one host holds.
//   create: POST /hostgroup/NAME/nodes?wait=agent on a group with a template, against a plain QEMU restore of
//           the same kind of template by a minimal script (bench/plain-template.ts: the floor here) and
//           against the cold boot path (a group with `template: false`); also create + a first exec, and a
//           create that finds a clone in the group's warm pool.
//   throughput: sandboxes per second with 8 clients creating at once.
//   density: idle sandboxes added in batches until exec on one of them takes a second or more, memory runs
//            short, or the cap is reached: PSS per VM (the template's pages shared), idle host CPU per VM.
//   node --import tsx bench/templates.ts   (boots its own daemon; bench/main.ts runs the same through runTemplateBench)
import { readdirSync, readFileSync } from "node:fs";
import { freemem } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import type { Accel } from "../src/engine/index.ts";
import type { ImageVersion } from "../src/image/index.ts";
import type { CorralClient } from "../src/sdk/index.ts";
import { makePlainTemplate, restorePlain } from "./plain-template.ts";
import { ms, percentile, ratio, table } from "./stats.ts";

const CREATES = Number(process.env.CORRAL_BENCH_CREATES ?? 20);
const COLD_CREATES = Number(process.env.CORRAL_BENCH_COLD_CREATES ?? 4);
const THROUGHPUT_TOTAL = Number(process.env.CORRAL_BENCH_THROUGHPUT ?? 32);
const CLIENTS = 8;
const DENSITY_CAP = Number(process.env.CORRAL_BENCH_DENSITY_CAP ?? 150);
const DENSITY_BATCH = 10;
/** Stop adding VMs when the host has less free memory than this. */
const MIN_FREE_BYTES = 2 * 1024 ** 3;
const CLOCK_TICKS = 100;

export interface TemplateBenchInput {
  client: CorralClient;
  /** A group with templates, one that also keeps a warm pool, and one without templates, all of one size. */
  group: string;
  poolGroup: string;
  coldGroup: string;
  stateDir: string;
  image: ImageVersion;
  accel: Accel;
  cpus: number;
  memoryMiB: number;
  log: (line: string) => void;
}

export interface TemplateBenchResult {
  create: { template: number[]; pool: number[]; plain: number[]; cold: number[]; firstExec: number[] };
  throughput: { total: number; seconds: number; perSecond: number };
  density: { count: number; stoppedBecause: string; execMs: number; pssMiBPerVm: number; idleCpuPercentPerVm: number; steps: DensityStep[] };
  tables: string[];
}

interface DensityStep {
  vms: number;
  execP50Ms: number;
  execMaxMs: number;
  pssMiBPerVm: number;
  idleCpuPercentPerVm: number;
  freeGiB: number;
}

export function qemuPidsOf(stateDir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (args.split("\0")[0]?.includes("qemu-system") && args.includes(`${stateDir}/vms/`)) pids.push(Number(entry));
    } catch {
      // gone
    }
  }
  return pids;
}

export function pssKiB(pid: number): number {
  try {
    const match = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
    return Number(match?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/** User + system CPU of a process so far, in clock ticks (0 once it is gone). */
export function cpuTicks(pid: number): number {
  try {
    const fields = (readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1] ?? "").split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

async function timeExec(client: CorralClient, hostname: string): Promise<number> {
  const started = performance.now();
  const result = await client.execBuffered(hostname, { cmd: "true" });
  if (result.exit_code !== 0) throw new Error(`exec true on ${hostname} failed`);
  return performance.now() - started;
}

async function measureCreates(input: TemplateBenchInput): Promise<TemplateBenchResult["create"]> {
  const { client, log } = input;
  const template: number[] = [];
  const plain: number[] = [];
  const cold: number[] = [];
  const firstExec: number[] = [];
  const plainTemplate = await makePlainTemplate(input.image, join(input.stateDir, "plain-template"), input.accel, input.cpus, input.memoryMiB);
  // Rounds alternate between Corral and the plain restore so that noise on this shared host hits both alike.
  for (let round = 0; round < CREATES; round++) {
    const started = performance.now();
    const node = await client.createNode(input.group, {}, { wait: "agent", timeout: "120s" });
    template.push(performance.now() - started);
    await timeExec(client, node.hostname);
    firstExec.push(performance.now() - started);
    await client.deleteNode(input.group, node.hostname);
    const clone = await restorePlain(plainTemplate, join(input.stateDir, "plain-clone"));
    plain.push(clone.ms);
    await clone.stop();
    log(`  create ${round + 1}/${CREATES}: template ${ms(template.at(-1) as number)} (+ first exec ${ms(firstExec.at(-1) as number)}), plain restore ${ms(clone.ms)}`);
  }
  // The warm pool refills in the background (one restore at a time): each create here waits until it is full,
  // so these are the latency of a create that finds a pooled clone.
  const pool: number[] = [];
  for (let round = 0; round < CREATES; round++) {
    await templateReady(client, input.poolGroup);
    const started = performance.now();
    const node = await client.createNode(input.poolGroup, {}, { wait: "agent", timeout: "120s" });
    pool.push(performance.now() - started);
    await client.deleteNode(input.poolGroup, node.hostname);
    log(`  warm pool create ${round + 1}/${CREATES}: ${ms(pool.at(-1) as number)}`);
  }
  for (let round = 0; round < COLD_CREATES; round++) {
    const started = performance.now();
    const node = await client.createNode(input.coldGroup, {}, { wait: "agent", timeout: "120s" });
    cold.push(performance.now() - started);
    await client.deleteNode(input.coldGroup, node.hostname);
    log(`  cold create ${round + 1}/${COLD_CREATES}: ${ms(cold.at(-1) as number)}`);
  }
  return { template, pool, plain, cold, firstExec };
}

async function measureThroughput(input: TemplateBenchInput): Promise<TemplateBenchResult["throughput"]> {
  const { client } = input;
  let next = 0;
  const created: string[] = [];
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async () => {
      while (next < THROUGHPUT_TOTAL) {
        next++;
        created.push((await client.createNode(input.group, {}, { wait: "agent", timeout: "300s" })).hostname);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  for (const hostname of created) await client.deleteNode(input.group, hostname);
  input.log(`  throughput: ${created.length} sandboxes in ${seconds.toFixed(1)} s with ${CLIENTS} clients`);
  return { total: created.length, seconds, perSecond: created.length / seconds };
}

async function measureDensity(input: TemplateBenchInput): Promise<TemplateBenchResult["density"]> {
  const { client, log } = input;
  const hostnames: string[] = [];
  const steps: DensityStep[] = [];
  let stoppedBecause = `the cap of ${DENSITY_CAP} VMs was reached`;
  try {
    for (;;) {
      if (hostnames.length >= DENSITY_CAP) break;
      if (freemem() < MIN_FREE_BYTES) {
        stoppedBecause = "free host memory fell under 2 GiB";
        break;
      }
      for (let i = 0; i < DENSITY_BATCH; i++) hostnames.push((await client.createNode(input.group, {}, { wait: "agent", timeout: "300s" })).hostname);
      await sleep(5000); // let the new ones settle into idle
      const pids = qemuPidsOf(input.stateDir);
      const before = pids.reduce((sum, pid) => sum + cpuTicks(pid), 0);
      const window = 10;
      await sleep(window * 1000);
      const idleTicks = pids.reduce((sum, pid) => sum + cpuTicks(pid), 0) - before;
      const samples: number[] = [];
      for (let i = 0; i < 5; i++) samples.push(await timeExec(client, hostnames[Math.floor(Math.random() * hostnames.length)] as string));
      const step: DensityStep = {
        vms: hostnames.length,
        execP50Ms: percentile(samples, 50),
        execMaxMs: Math.max(...samples),
        pssMiBPerVm: pids.reduce((sum, pid) => sum + pssKiB(pid), 0) / 1024 / pids.length,
        idleCpuPercentPerVm: (idleTicks / CLOCK_TICKS / window / pids.length) * 100,
        freeGiB: freemem() / 1024 ** 3,
      };
      steps.push(step);
      log(
        `  density ${step.vms} VMs: exec p50 ${ms(step.execP50Ms)} (max ${ms(step.execMaxMs)}), PSS ${step.pssMiBPerVm.toFixed(1)} MiB/VM, idle CPU ${step.idleCpuPercentPerVm.toFixed(2)}%/VM, ${step.freeGiB.toFixed(1)} GiB free`,
      );
      if (step.execMaxMs >= 1000) {
        stoppedBecause = "exec took a second or more";
        break;
      }
    }
  } finally {
    for (const hostname of hostnames) await client.deleteNode(input.group, hostname).catch(() => undefined);
  }
  const good = steps.filter((s) => s.execMaxMs < 1000);
  const last = good.at(-1) ?? steps.at(-1);
  return {
    count: good.at(-1)?.vms ?? 0,
    stoppedBecause,
    execMs: last?.execP50Ms ?? Number.NaN,
    pssMiBPerVm: last?.pssMiBPerVm ?? Number.NaN,
    idleCpuPercentPerVm: last?.idleCpuPercentPerVm ?? Number.NaN,
    steps,
  };
}

/** Resolves once the group's template is ready (and its warm pool, if it has one, holds a clone). */
async function templateReady(client: CorralClient, group: string): Promise<void> {
  for (;;) {
    const info = (await client.templates()).find((t) => t.hostgroup === group);
    if (info?.state === "ready" && info.pooled >= Math.min(1, info.warm_pool)) return;
    await sleep(500);
  }
}

export async function runTemplateBench(input: TemplateBenchInput): Promise<TemplateBenchResult> {
  for (const group of [input.group, input.poolGroup]) await templateReady(input.client, group);
  const create = await measureCreates(input);
  const throughput = await measureThroughput(input);
  const density = await measureDensity(input);
  const p = (samples: number[], q: number): number => percentile(samples, q);
  const createRows = [50, 99].map((q) => [
    `create -> agent ready, p${q}`,
    ms(p(create.template, q)),
    ms(p(create.plain, q)),
    ratio(p(create.template, q), p(create.plain, q)),
    ms(p(create.cold, q)),
    ratio(p(create.template, q), p(create.cold, q)),
  ]);
  createRows.push(["create + first exec, p50", ms(p(create.firstExec, 50)), "-", "-", "-", "-"]);
  for (const q of [50, 99]) {
    createRows.push([
      `warm pool hit -> agent ready, p${q}`,
      ms(p(create.pool, q)),
      ms(p(create.plain, q)),
      ratio(p(create.pool, q), p(create.plain, q)),
      ms(p(create.cold, q)),
      ratio(p(create.pool, q), p(create.cold, q)),
    ]);
  }
  const densityRows = [
    ["idle sandboxes with exec < 1 s", String(density.count), `(stopped: ${density.stoppedBecause})`],
    ["exec round trip at that count, p50", ms(density.execMs), ""],
    ["PSS per idle VM", `${density.pssMiBPerVm.toFixed(1)} MiB`, "(template pages shared)"],
    ["host CPU per idle VM", `${density.idleCpuPercentPerVm.toFixed(2)} % of a core`, ""],
    ["create throughput, 8 clients", `${throughput.perSecond.toFixed(2)} sandboxes/s`, `(${throughput.total} in ${throughput.seconds.toFixed(1)} s)`],
  ];
  const tables = [
    table([`template create, ${input.cpus} vCPU / ${input.memoryMiB} MiB`, "Corral (API)", "plain restore", "ours/plain", "cold boot", "ours/cold"], createRows),
    table(["density (idle sandboxes)", "value", ""], densityRows),
  ];
  return { create, throughput, density, tables };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { runSetup } = await import("../src/setup/setup.ts");
  const { silentProgress } = await import("../src/image/index.ts");
  const { TestDaemon } = await import("../test/helpers/daemon-process.ts");
  const { baseImage } = await runSetup(silentProgress);
  const config =
    "config:\n  host_groups:\n    - name: bench\n      image: base\n      vcpu: 1\n      ram_mb: 512\n    - name: pool\n      image: base\n      vcpu: 1\n      ram_mb: 512\n      warm_pool: 2\n" +
    "    - name: cold\n      image: base\n      vcpu: 1\n      ram_mb: 512\n      template: false\n";
  const daemon = await TestDaemon.create(config);
  await daemon.start();
  try {
    const client = daemon.client;
    const info = await client.info();
    const result = await runTemplateBench({
      client,
      group: "bench",
      poolGroup: "pool",
      coldGroup: "cold",
      stateDir: daemon.stateDir,
      image: baseImage,
      accel: info.accel as Accel,
      cpus: 1,
      memoryMiB: 512,
      log: (line) => process.stderr.write(`${line}\n`),
    });
    process.stdout.write(`\n${result.tables.join("\n\n")}\n`);
  } catch (err) {
    process.stderr.write(`bench failed; the daemon's log ends with:\n${daemon.log.split("\n").slice(-40).join("\n")}\n`);
    throw err;
  } finally {
    if (process.env.CORRAL_BENCH_DAEMON_LOG) (await import("node:fs")).writeFileSync(process.env.CORRAL_BENCH_DAEMON_LOG, daemon.log);
    await daemon.dispose();
  }
}
