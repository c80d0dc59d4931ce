// `npm run bench`: Corral against its peers, side by side in one run, with ratios.
//   boot: POST /hostgroup/NAME/nodes?wait=agent through the daemon vs plain QEMU (same kernel, image and
//         arguments, a minimal script) until the agent answers; boots alternate so noise hits both alike.
//   exec: buffered exec of `true` through the daemon's API vs the same request straight to the agent.
//   copy: /vm/HOST/cp throughput both ways vs our own exec path carrying the same bytes (bench/copy.ts).
//   templates: create from a template snapshot vs a plain QEMU restore vs cold boot, create throughput,
//         and how many idle sandboxes the host holds (bench/templates.ts).
//   images: base against debian: build time (forced and cached), cold boot, template create p50/p99, PSS per
//         idle VM (bench/images.ts), with a daemon of its own once the first one is gone.
//   dockerfile: a first build, rebuilds with a full step cache, a rebuild after a changed COPY (bench/dockerfile.ts).
//   controller scale: a controller over 1,000 simulated hosts, 10,000 placements, GET /api/envs and
//         /api/status, on SQLite and PostgreSQL (bench/controller-scale.ts), once the daemon is gone.
//   cli: `corral --version` and `corral vm list` from the built package and the checkout, beside `node -e 0`.
//   ksm: idle template clones with memory merging off and on (config ksm), on a daemon of its own (bench/ksm.ts).
//   network: per mode (user, bridge, isolated) TCP throughput and round trips VM -> outside, host -> VM, VM -> VM,
//         and what each mode adds to a template clone (bench/network.ts), in a network namespace of its own.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { cpus } from "node:os";
import { join } from "node:path";
import { runControllerScaleBench } from "./controller-scale.ts";
import { runImageBench } from "./images.ts";
import { runKsmBenchOnOwnDaemon } from "./ksm.ts";
import { runNetworkBench } from "./network.ts";
import { COPY_BENCH_HEADERS, runCopyBench } from "./copy.ts";
import { DOCKERFILE_BENCH_HEADERS, runDockerfileBench } from "./dockerfile.ts";
import { bootPlain, plainExecTrue } from "./plain-qemu.ts";
import { runShellBench, SHELL_BENCH_HEADERS } from "./shell.ts";
import { cliTable, runCliBench } from "./cli.ts";
import { runTemplateBench } from "./templates.ts";
import { ms, percentile, ratio, table } from "./stats.ts";
import { silentProgress } from "../src/image/index.ts";
import { runSetup } from "../src/setup/setup.ts";
import { TestDaemon } from "../test/helpers/daemon-process.ts";

const BOOTS = Number(process.env.CORRAL_BENCH_BOOTS ?? 8);
const EXECS = Number(process.env.CORRAL_BENCH_EXECS ?? 200);
const VM = { cpus: 1, memoryMiB: 512 };
// "bench" clones its sandboxes from a template, "pool" also keeps two clones warm; "cold" boots each one (the
// cold boot rows compare that path).
const CONFIG = `config:
  host_groups:
    - name: bench
      image: base
      vcpu: ${VM.cpus}
      ram_mb: ${VM.memoryMiB}
    - name: pool
      image: base
      vcpu: ${VM.cpus}
      ram_mb: ${VM.memoryMiB}
      warm_pool: 2
    - name: cold
      image: base
      vcpu: ${VM.cpus}
      ram_mb: ${VM.memoryMiB}
      template: false
`;

const { baseImage } = await runSetup(silentProgress);
const daemon = await TestDaemon.create(CONFIG);
await daemon.start();
const client = daemon.client;
const info = await client.info();
const accel = info.accel as "kvm" | "tcg";
process.stderr.write(`bench: ${accel.toUpperCase()}, ${cpus().length} cores, image base@${baseImage.version}, ${BOOTS} boots and ${EXECS} execs each\n`);

const ours: number[] = [];
const plain: number[] = [];
try {
  for (let round = 0; round < BOOTS; round++) {
    const started = performance.now();
    const created = await client.createNode("cold", {}, { wait: "agent", timeout: "120s" });
    ours.push(performance.now() - started);
    await client.deleteNode("cold", created.hostname);

    const vm = await bootPlain(baseImage, join(daemon.stateDir, "plain"), accel, VM.cpus, VM.memoryMiB);
    plain.push(vm.bootMs);
    await vm.stop();
    process.stderr.write(`  boot ${round + 1}/${BOOTS}: ours ${ms(ours.at(-1) as number)}, plain ${ms(vm.bootMs)}\n`);
  }

  const execOurs: number[] = [];
  const execPlain: number[] = [];
  const target = await client.createNode("bench", {}, { wait: "agent", timeout: "120s" });
  const peer = await bootPlain(baseImage, join(daemon.stateDir, "plain"), accel, VM.cpus, VM.memoryMiB);
  for (let i = 0; i < 10; i++) {
    await client.execBuffered(target.hostname, { cmd: "true" });
    await plainExecTrue(peer.session);
  }
  for (let block = 0; block < EXECS / 20; block++) {
    for (let i = 0; i < 20; i++) {
      const started = performance.now();
      const result = await client.execBuffered(target.hostname, { cmd: "true" });
      execOurs.push(performance.now() - started);
      if (result.exit_code !== 0) throw new Error(`exec true failed: ${JSON.stringify(result)}`);
    }
    for (let i = 0; i < 20; i++) execPlain.push(await plainExecTrue(peer.session));
  }
  await peer.stop();
  const copyRows = await runCopyBench(client, target.hostname, (line) => process.stderr.write(`${line}\n`));
  const shell = await runShellBench(client, target.hostname);
  const cli = await runCliBench(daemon.url, Number(process.env.CORRAL_BENCH_CLI_RUNS ?? 30), (line) => process.stderr.write(`${line}\n`));
  await client.deleteNode("bench", target.hostname);
  const templates = await runTemplateBench({
    client,
    group: "bench",
    poolGroup: "pool",
    coldGroup: "cold",
    stateDir: daemon.stateDir,
    image: baseImage,
    accel,
    cpus: VM.cpus,
    memoryMiB: VM.memoryMiB,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  const dockerfile = await runDockerfileBench(client, Number(process.env.CORRAL_BENCH_REBUILDS ?? 5), (line) => process.stderr.write(`${line}\n`));

  const rows = [
    ["create -> agent ready, p50", ms(percentile(ours, 50)), ms(percentile(plain, 50)), ratio(percentile(ours, 50), percentile(plain, 50))],
    ["create -> agent ready, p90", ms(percentile(ours, 90)), ms(percentile(plain, 90)), ratio(percentile(ours, 90), percentile(plain, 90))],
    ["exec `true` round trip, p50", ms(percentile(execOurs, 50)), ms(percentile(execPlain, 50)), ratio(percentile(execOurs, 50), percentile(execPlain, 50))],
    ["exec `true` round trip, p99", ms(percentile(execOurs, 99)), ms(percentile(execPlain, 99)), ratio(percentile(execOurs, 99), percentile(execPlain, 99))],
  ];
  const report = table(["cold boot, 1 vCPU / 512 MiB", "Corral (API)", "plain QEMU", "ours/plain"], rows);
  const sections = [
    report,
    table([...COPY_BENCH_HEADERS], copyRows),
    table([...SHELL_BENCH_HEADERS], shell.rows),
    cliTable(cli.rows),
    ...templates.tables,
    table([...DOCKERFILE_BENCH_HEADERS], dockerfile.rows),
  ];
  process.stdout.write(`\n${sections.join("\n\n")}\n\nAccelerator: ${accel} (${info.accel_reason})\n`);
  const results = {
    date: new Date().toISOString(),
    accel,
    cores: cpus().length,
    image: baseImage.version,
    boot: { ours, plain },
    exec: { ours: execOurs, plain: execPlain },
    copy: copyRows,
    shell: { shell: shell.shell, forward: shell.forward },
    cli: cli.samples,
    templates: { create: templates.create, throughput: templates.throughput, density: templates.density },
    dockerfile: dockerfile.samples,
  };
  await mkdir("bench/results", { recursive: true });
  await writeFile(join("bench/results", "latest.json"), `${JSON.stringify(results, null, 2)}\n`);
} catch (err) {
  process.stderr.write(`bench failed; the daemon's log ends with:\n${daemon.log.split("\n").slice(-40).join("\n")}\n`);
  throw err;
} finally {
  await daemon.dispose();
}

// The images compare on a daemon of their own; the controller needs none: both run once the first daemon and
// its VMs are gone, and add to latest.json.
const images = await runImageBench((line) => process.stderr.write(`${line}\n`));
process.stdout.write(`\n${images.tables.join("\n\n")}\n`);
const scale = await runControllerScaleBench({ log: (line) => process.stderr.write(`${line}\n`) });
process.stdout.write(`\n${scale.tables.join("\n\n")}\n`);
const network = await runNetworkBench({ log: (line) => process.stderr.write(`${line}\n`) });
if (network) process.stdout.write(`\n${network.tables.join("\n\n")}\n`);
const ksm = await runKsmBenchOnOwnDaemon(Number(process.env.CORRAL_BENCH_KSM_VMS ?? 20), (line) => process.stderr.write(`${line}\n`));
if (ksm) process.stdout.write(`\n${ksm}\n`);
const latest = join("bench/results", "latest.json");
const networkResults = network ? { paths: network.paths, create: network.create } : undefined;
await writeFile(
  latest,
  `${JSON.stringify({ ...(JSON.parse(await readFile(latest, "utf8")) as object), images: images.results, controllerScale: scale.backends, network: networkResults }, null, 2)}\n`,
);
