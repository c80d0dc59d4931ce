// What the periodic agent liveness check costs an idle VM: host CPU of the QEMU processes of idle VMs with the
// checks off, at the default interval (10 s) and every second (to see the cost of one check above the noise),
// the three runs interleaved so that the machine's noise hits each alike. `node --import tsx bench/liveness.ts`.
import { setTimeout as sleep } from "node:timers/promises";
import { processCpuNanoseconds } from "../src/engine/index.ts";
import { TestDaemon, qemuPids } from "../test/helpers/daemon-process.ts";
import { table } from "./stats.ts";

const VMS = Number(process.env.CORRAL_BENCH_LIVENESS_VMS ?? 3);
const SECONDS = Number(process.env.CORRAL_BENCH_LIVENESS_SECONDS ?? 60);
const ROUNDS = Number(process.env.CORRAL_BENCH_LIVENESS_ROUNDS ?? 2);
const SETTINGS = [
  { label: "checks off", interval: "0s" },
  { label: "every 10 s (default)", interval: "10s" },
  { label: "every 1 s", interval: "1s" },
] as const;

const config = (interval: string): string => `config:
  health_check:
    interval: ${interval}
    timeout: ${interval === "0s" ? "5s" : interval === "1s" ? "1s" : "5s"}
  host_groups:
    - name: idle
      image: base
      vcpu: 1
      ram_mb: 256
      template: false
`;

/** Percent of one core each QEMU used over `seconds` of idling, averaged over the VMs. */
async function idleCpu(interval: string): Promise<number> {
  const daemon = await TestDaemon.create(config(interval));
  try {
    await daemon.start();
    for (let i = 0; i < VMS; i++) await daemon.client.createNode("idle", {}, { wait: "agent", timeout: "180s" });
    await sleep(20_000); // boot's tail (userdata, first writes) settles
    const pids = qemuPids(daemon.stateDir);
    const before = pids.map((pid) => processCpuNanoseconds(pid) ?? 0);
    const started = performance.now();
    await sleep(SECONDS * 1000);
    const elapsed = (performance.now() - started) * 1e6;
    const used = pids.map((pid, i) => (processCpuNanoseconds(pid) ?? 0) - (before[i] as number));
    return (used.reduce((a, b) => a + b, 0) / pids.length / elapsed) * 100;
  } finally {
    await daemon.dispose();
  }
}

const samples = new Map<string, number[]>(SETTINGS.map((s) => [s.label, []]));
for (let round = 0; round < ROUNDS; round++) {
  for (const setting of SETTINGS) {
    const percent = await idleCpu(setting.interval);
    samples.get(setting.label)?.push(percent);
    process.stderr.write(`  round ${round + 1}/${ROUNDS}, ${setting.label}: ${percent.toFixed(2)} % of a core per idle VM\n`);
  }
}
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
process.stdout.write(
  `${table(
    ["liveness check", "host CPU per idle VM (mean)", "samples"],
    SETTINGS.map((s) => {
      const xs = samples.get(s.label) ?? [];
      return [s.label, `${mean(xs).toFixed(2)} %`, xs.map((x) => x.toFixed(2)).join(", ")];
    }),
  )}\n`,
);
