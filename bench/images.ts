// The built-in images side by side in one run: `base` (busybox) against `debian` (systemd), each through the
// same daemon and the same paths.
//   build: a forced build (cold: every step runs; mmdebstrap fetches from the archive) and the cached check
//          (inputs hashed, nothing built), through the same functions the set-up step calls.
//   cold boot: create with wait=agent on a group without templates.
//   template create: create with wait=agent from the group's template snapshot, p50 and p99.
//   PSS per idle VM: a few idle clones of the template, their QEMU processes' proportional set size.
//   node --import tsx bench/images.ts   (bench/main.ts runs the same through runImageBench)
import { setTimeout as sleep } from "node:timers/promises";
import { pathToFileURL } from "node:url";
import { ensureBaseImage } from "../src/image/base-image.ts";
import { ensureDebianImage } from "../src/image/debian-image.ts";
import { corralHome, silentProgress, type ImageVersion } from "../src/image/index.ts";
import type { CorralClient } from "../src/sdk/index.ts";
import { TestDaemon } from "../test/helpers/daemon-process.ts";
import { ms, percentile, ratio, table } from "./stats.ts";
import { pssKiB, qemuPidsOf } from "./templates.ts";

const COLD_BOOTS = Number(process.env.CORRAL_BENCH_IMAGE_BOOTS ?? 3);
const CREATES = Number(process.env.CORRAL_BENCH_IMAGE_CREATES ?? 10);
const IDLE_VMS = Number(process.env.CORRAL_BENCH_IMAGE_IDLE ?? 4);
/** 0 skips the forced builds (a debian one takes minutes). */
const COLD_BUILDS = process.env.CORRAL_BENCH_IMAGE_BUILDS !== "0";
const IMAGES = ["base", "debian"] as const;
type ImageName = (typeof IMAGES)[number];
const VM = { cpus: 1, memoryMiB: 1024 };

export interface ImageBenchResult {
  image: ImageName;
  buildColdMs: number;
  buildCachedMs: number;
  coldBootMs: number[];
  templateCreateMs: number[];
  pssMiBPerIdleVm: number;
}

function ensure(image: ImageName, force: boolean): Promise<ImageVersion> {
  const build = image === "base" ? ensureBaseImage : ensureDebianImage;
  return build(corralHome(), silentProgress, { force });
}

async function timed<T>(work: () => Promise<T>): Promise<[number, T]> {
  const started = performance.now();
  const value = await work();
  return [performance.now() - started, value];
}

function config(): string {
  const group = (name: string, image: ImageName, template: boolean): string =>
    `    - name: ${name}\n      image: ${image}\n      vcpu: ${VM.cpus}\n      ram_mb: ${VM.memoryMiB}\n      template: ${template}\n`;
  return `config:\n  host_groups:\n${IMAGES.map((i) => group(`${i}-tmpl`, i, true) + group(`${i}-cold`, i, false)).join("")}`;
}

async function templateReady(client: CorralClient, group: string): Promise<void> {
  for (;;) {
    if ((await client.templates()).find((t) => t.hostgroup === group)?.state === "ready") return;
    await sleep(500);
  }
}

async function measure(client: CorralClient, stateDir: string, image: ImageName, log: (line: string) => void): Promise<Omit<ImageBenchResult, "buildColdMs" | "buildCachedMs">> {
  const coldBootMs: number[] = [];
  for (let i = 0; i < COLD_BOOTS; i++) {
    const [took, vm] = await timed(() => client.createNode(`${image}-cold`, {}, { wait: "agent", timeout: "300s" }));
    coldBootMs.push(took);
    await client.deleteNode(`${image}-cold`, vm.hostname);
    log(`  ${image}: cold boot ${i + 1}/${COLD_BOOTS} ${ms(took)}`);
  }
  await templateReady(client, `${image}-tmpl`);
  const templateCreateMs: number[] = [];
  for (let i = 0; i < CREATES; i++) {
    const [took, vm] = await timed(() => client.createNode(`${image}-tmpl`, {}, { wait: "agent", timeout: "300s" }));
    templateCreateMs.push(took);
    await client.deleteNode(`${image}-tmpl`, vm.hostname);
  }
  log(`  ${image}: template create p50 ${ms(percentile(templateCreateMs, 50))}`);
  const idle: string[] = [];
  for (let i = 0; i < IDLE_VMS; i++) idle.push((await client.createNode(`${image}-tmpl`, {}, { wait: "agent", timeout: "300s" })).hostname);
  // Let each clone finish what its boot left to do (systemd goes on after the snapshot) before measuring.
  await sleep(30_000);
  const pids = qemuPidsOf(stateDir);
  const pssMiBPerIdleVm = pids.reduce((sum, pid) => sum + pssKiB(pid), 0) / 1024 / Math.max(1, pids.length);
  for (const hostname of idle) await client.deleteNode(`${image}-tmpl`, hostname);
  return { image, coldBootMs, templateCreateMs, pssMiBPerIdleVm };
}

/** Builds (forced, then cached), then boots both images through one daemon of its own. */
export async function runImageBench(log: (line: string) => void): Promise<{ results: ImageBenchResult[]; tables: string[] }> {
  const builds = new Map<ImageName, { cold: number; cached: number }>();
  for (const image of IMAGES) {
    const cold = COLD_BUILDS ? (await timed(() => ensure(image, true)))[0] : Number.NaN;
    const [cached] = await timed(() => ensure(image, false));
    builds.set(image, { cold, cached });
    log(`  ${image}: build ${ms(cold)} cold, ${ms(cached)} cached`);
  }
  const daemon = await TestDaemon.create(config());
  await daemon.start();
  const results: ImageBenchResult[] = [];
  try {
    for (const image of IMAGES) {
      const build = builds.get(image) ?? { cold: Number.NaN, cached: Number.NaN };
      results.push({ buildColdMs: build.cold, buildCachedMs: build.cached, ...(await measure(daemon.client, daemon.stateDir, image, log)) });
    }
  } finally {
    await daemon.dispose();
  }
  const [base, debian] = results as [ImageBenchResult, ImageBenchResult];
  const row = (label: string, pick: (r: ImageBenchResult) => number, format: (n: number) => string = ms): string[] => [
    label,
    format(pick(base)),
    format(pick(debian)),
    ratio(pick(debian), pick(base)),
  ];
  const rows = [
    row("image build, cold (forced)", (r) => r.buildColdMs),
    row("image build, cached (inputs unchanged)", (r) => r.buildCachedMs),
    row("cold boot -> agent ready, p50", (r) => percentile(r.coldBootMs, 50)),
    row("template create -> agent ready, p50", (r) => percentile(r.templateCreateMs, 50)),
    row("template create -> agent ready, p99", (r) => percentile(r.templateCreateMs, 99)),
    row(
      "PSS per idle VM (template clones)",
      (r) => r.pssMiBPerIdleVm,
      (n) => `${n.toFixed(1)} MiB`,
    ),
  ];
  return { results, tables: [table([`images, ${VM.cpus} vCPU / ${VM.memoryMiB} MiB`, "base", "debian", "debian/base"], rows)] };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { runSetup } = await import("../src/setup/setup.ts");
  await runSetup(silentProgress);
  const { tables } = await runImageBench((line) => process.stderr.write(`${line}\n`));
  process.stdout.write(`\n${tables.join("\n\n")}\n`);
}
