// The fleet controller at scale: a real controller, started in this process, over 1,000 simulated hosts
// (bench/simulated-hosts.ts: a light simulation of the agent API, used only here, on a worker thread), once
// per store backend (SQLite in a temporary state directory, a throwaway PostgreSQL):
//   register:  POST /api/hosts for every simulated host (the controller asks each for /api/info and /api/vms).
//   place:     10,000 environments of one VM each through POST /api/envs, 16 clients at once on a worker thread
//              (bench/create-clients.ts): placements per second, create latency overall and for the first and
//              the last tenth (does it grow?), and the controller's event loop delay meanwhile.
//   heartbeat: full heartbeat rounds (every host's info and VM list, reconciled against 10,000 VMs), timed by
//              running the controller's own Heartbeats; the controller's loop also beats every 10 s throughout.
//   reads:     GET /api/envs (50) and GET /api/status (500), one at a time after a warm-up, with the 10,000
//              environments stored: p50/p99 and the size of the answer; and every page of GET /api/envs?limit=100
//              from the first to the last (after a warm-up walk): each page's p50/p99.
//   paced:     after the reads, 4,000 more environments (40 % of CORRAL_BENCH_SIM_ENVS when fewer) sent at a steady 400 a second (issue 16's rate) rather
//              than flat out: the answers' latency and the controller's event loop delay below saturation.
//   node --import tsx bench/controller-scale.ts
//   CORRAL_BENCH_SIM_HOSTS (1000), CORRAL_BENCH_SIM_ENVS (10000), CORRAL_BENCH_SCALE_BACKENDS ("sqlite,postgres")
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { Writable } from "node:stream";
import { pathToFileURL } from "node:url";
import { startController } from "../src/controller/controller.ts";
import type { BackendName } from "../src/controller/db/index.ts";
import { FleetEvents } from "../src/controller/events.ts";
import { Heartbeats } from "../src/controller/heartbeat.ts";
import type { FleetStatus, VmSpec } from "../src/protocol/controller.ts";
import { ControllerClient } from "../src/sdk/controller-client.ts";
import { createLogger } from "../src/util/log.ts";
import { startPostgres } from "../test/helpers/postgres.ts";
import { createFromWorker, inParallel } from "./create-clients.ts";
import { startSimulatedHostsThread, type SimulatedCounts } from "./simulated-hosts.ts";
import { ms, percentile, ratio, table } from "./stats.ts";

const BACKENDS: readonly BackendName[] = ["sqlite", "postgres"];
const BACKEND_TITLES: Record<BackendName, string> = { sqlite: "SQLite", postgres: "PostgreSQL" };
const CLIENTS = 16;
const HEARTBEAT_MS = 10_000;
const HEARTBEAT_ROUNDS = 3;
const ENV_LISTS = 50;
/** The page size of the paged GET /api/envs walk. */
const ENV_PAGE = 100;
const STATUS_READS = 500;
/** Issue 16's rate: the loop's delay is also measured with creates sent at this steady rate, not flat out. */
const PACED_RATE = 400;
const PACED_ENVS = 4_000;
/** The paced creates for a run of `envs`: 4,000 at the default 10,000, fewer when the knobs shrink the fleet. */
const pacedEnvs = (envs: number): number => Math.min(PACED_ENVS, Math.ceil(envs * 0.4));
/** Each environment: one VM of TTstack's default size but a smaller disk (a simulated host takes 128 of them, by CPU). */
const VM: VmSpec = { image: "base", cpu: 2, mem: 1024, disk: 20_480 };
const SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0bench0controller0scale0simulated0hosts0key0 bench@corral";

export interface ControllerScaleOptions {
  hosts?: number;
  envs?: number;
  backends?: readonly BackendName[];
  log?: (line: string) => void;
}

export interface ReadSamples {
  /** Each request's time until its whole body arrived. */
  samplesMs: number[];
  bytes: number;
}

export interface BackendScaleResult {
  backend: BackendName;
  hosts: number;
  envs: number;
  vmsPerEnv: 1;
  register: { seconds: number; perSecond: number };
  create: { seconds: number; perSecond: number; failures: number; p50Ms: number; p90Ms: number; p99Ms: number; maxMs: number; firstTenthP50Ms: number; lastTenthP50Ms: number };
  /** The controller's event loop delay while placing (its heartbeats beat meanwhile; the clients are on a thread of their own), p99. */
  eventLoopDelayP99Ms: number;
  /** PACED_ENVS more creates sent at PACED_RATE a second (after the reads): what the loop looks like below saturation. */
  paced: { perSecond: number; failures: number; p50Ms: number; p99Ms: number; eventLoopDelayP99Ms: number };
  heartbeatRoundMs: number[];
  /** GET /api/envs: the whole list in one answer (what TTstack's clients ask for). */
  envList: ReadSamples;
  /** GET /api/envs?limit=ENV_PAGE, every page once (`bytes`: the biggest page). */
  envPages: ReadSamples & { pages: number };
  status: ReadSamples;
  fleet: FleetStatus;
  /** VMs whose last `error` is set at the end (a heartbeat that thought one lost leaves it there). */
  vmsWithError: number;
  /** Requests the simulated hosts served, by route. */
  hostRequests: SimulatedCounts;
  /** Warnings and errors the controller logged. */
  warnings: number;
  seconds: number;
}

export interface ControllerScaleResult {
  backends: BackendScaleResult[];
  tables: string[];
}

function positiveInteger(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === "") return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new Error(`Set ${name} to an integer ≥ 1, got ${JSON.stringify(text)}`);
  return value;
}

function backendsFromEnv(): BackendName[] {
  const text = process.env.CORRAL_BENCH_SCALE_BACKENDS ?? BACKENDS.join(",");
  return text.split(",").map((part) => {
    const name = part.trim();
    if (!(BACKENDS as readonly string[]).includes(name)) throw new Error(`Set CORRAL_BENCH_SCALE_BACKENDS to a list of ${BACKENDS.join(", ")}, got ${JSON.stringify(text)}`);
    return name as BackendName;
  });
}

/** Runs `task(0 … total-1)` with `workers` at a time. */
/** The controller's log at warn level: counted, the first few shown. */
function warningLog(log: (line: string) => void): { stream: Writable; count: () => number } {
  let lines = 0;
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (!line.trim()) continue;
        if (++lines <= 5) log(`  controller: ${line}`);
      }
      done();
    },
  });
  return { stream, count: () => lines };
}

async function timedReads(client: ControllerClient, path: string, warmUp: number, count: number): Promise<ReadSamples> {
  let bytes = 0;
  const read = async (): Promise<number> => {
    const started = performance.now();
    const response = await client.transport.send("GET", path, {});
    bytes = Buffer.byteLength(await response.body.text());
    return performance.now() - started;
  };
  for (let i = 0; i < warmUp; i++) await read();
  const samplesMs: number[] = [];
  for (let i = 0; i < count; i++) samplesMs.push(await read());
  return { samplesMs, bytes };
}

/** The pages of GET /api/envs?limit=PAGE, walked from the first to the last, twice (the first walk warms up): each page's time. */
async function timedPages(client: ControllerClient, pageSize: number): Promise<ReadSamples & { pages: number }> {
  let bytes = 0;
  let samplesMs: number[] = [];
  for (let walk = 0; walk < 2; walk++) {
    samplesMs = [];
    let after: string | null = null;
    do {
      const path: string = `/api/envs?limit=${pageSize}${after === null ? "" : `&after=${encodeURIComponent(after)}`}`;
      const started = performance.now();
      const response = await client.transport.send("GET", path, {});
      const text = await response.body.text();
      samplesMs.push(performance.now() - started);
      bytes = Math.max(bytes, Buffer.byteLength(text));
      after = (JSON.parse(text) as { next: string | null }).next;
    } while (after !== null);
  }
  return { samplesMs, bytes, pages: samplesMs.length };
}

async function runBackend(backend: BackendName, hosts: number, envs: number, log: (line: string) => void): Promise<BackendScaleResult> {
  const title = `controller scale (${BACKEND_TITLES[backend]})`;
  const began = performance.now();
  const stateDir = await mkdtemp(join(tmpdir(), "corral-scale-"));
  const undo: (() => Promise<void>)[] = [async () => rm(stateDir, { recursive: true, force: true })];
  try {
    log(`${title}: starting ${hosts} simulated hosts`);
    const sim = await startSimulatedHostsThread(hosts);
    undo.push(() => sim.close());
    let databaseUrl: string | undefined;
    if (backend === "postgres") {
      const server = await startPostgres();
      undo.push(() => server.stop());
      databaseUrl = server.url;
    }
    const warnings = warningLog(log);
    const logger = createLogger({ level: "warn", readable: true, destination: warnings.stream });
    const controller = await startController({ port: 0, stateDir, databaseUrl, heartbeatMs: HEARTBEAT_MS, log: logger });
    undo.push(() => controller.stop());
    const client = new ControllerClient({ url: controller.url, timeoutMs: 120_000 });
    undo.push(() => client.close());

    log(`${title}: registering ${hosts} simulated hosts`);
    const started = performance.now();
    await inParallel(hosts, CLIENTS, async (i) => {
      await client.hosts.add({ uri: sim.uris[i] as string });
    });
    const registerSeconds = (performance.now() - started) / 1000;

    log(`${title}: creating ${envs} environments of 1 VM, ${CLIENTS} clients on a thread of their own`);
    let lastMark = performance.now();
    const step = Math.max(1, Math.floor(envs / 10));
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    const {
      createMs,
      failures,
      seconds: createSeconds,
    } = await createFromWorker(
      { url: controller.url, envs, clients: CLIENTS, vm: VM, sshKey: SSH_KEY, idPrefix: "scale" },
      (done) => {
        const now = performance.now();
        log(`  ${done}/${envs} environments, ${((step * 1000) / (now - lastMark)).toFixed(0)}/s over the last ${step}`);
        lastMark = now;
      },
      (index, message) => log(`  create ${index + 1} failed: ${message}`),
    );
    delay.disable();
    const made = createMs.filter(Number.isFinite);
    const tenth = Math.max(1, Math.floor(envs / 10));

    log(`${title}: ${HEARTBEAT_ROUNDS} heartbeat rounds over ${hosts} hosts`);
    const heartbeats = new Heartbeats({ store: controller.store, drivers: controller.ctx.drivers, events: new FleetEvents(controller.store, logger), log: logger });
    const heartbeatRoundMs: number[] = [];
    for (let round = 0; round < HEARTBEAT_ROUNDS; round++) {
      const t0 = performance.now();
      await heartbeats.beatAll();
      heartbeatRoundMs.push(performance.now() - t0);
    }

    log(`${title}: ${ENV_LISTS} × GET /api/envs, every page of ${ENV_PAGE} twice, ${STATUS_READS} × GET /api/status`);
    const envList = await timedReads(client, "/api/envs", 3, ENV_LISTS);
    const envPages = await timedPages(client, ENV_PAGE);
    const status = await timedReads(client, "/api/status", 20, STATUS_READS);

    log(`${title}: ${pacedEnvs(envs)} more environments offered at ${PACED_RATE}/s`);
    const pacedDelay = monitorEventLoopDelay({ resolution: 10 });
    pacedDelay.enable();
    const paced = await createFromWorker(
      { url: controller.url, envs: pacedEnvs(envs), clients: CLIENTS, vm: VM, sshKey: SSH_KEY, idPrefix: "paced", ratePerSecond: PACED_RATE },
      () => undefined,
      (index, message) => log(`  paced create ${index + 1} failed: ${message}`),
    );
    pacedDelay.disable();
    const pacedMade = paced.createMs.filter(Number.isFinite);

    const fleet = await client.status();
    const vmsWithError = (await client.envs.list()).filter((env) => env.status === "partial" || env.status === "failed").length;
    if (fleet.total_envs !== made.length + pacedMade.length) log(`  the controller holds ${fleet.total_envs} environments, ${made.length + pacedMade.length} creates succeeded`);

    return {
      backend,
      hosts,
      envs,
      vmsPerEnv: 1,
      register: { seconds: registerSeconds, perSecond: hosts / registerSeconds },
      create: {
        seconds: createSeconds,
        perSecond: made.length / createSeconds,
        failures,
        p50Ms: percentile(made, 50),
        p90Ms: percentile(made, 90),
        p99Ms: percentile(made, 99),
        maxMs: percentile(made, 100),
        firstTenthP50Ms: percentile(createMs.slice(0, tenth).filter(Number.isFinite), 50),
        lastTenthP50Ms: percentile(createMs.slice(-tenth).filter(Number.isFinite), 50),
      },
      eventLoopDelayP99Ms: delay.percentile(99) / 1e6,
      paced: {
        perSecond: pacedMade.length / paced.seconds,
        failures: paced.failures,
        p50Ms: percentile(pacedMade, 50),
        p99Ms: percentile(pacedMade, 99),
        eventLoopDelayP99Ms: pacedDelay.percentile(99) / 1e6,
      },
      heartbeatRoundMs,
      envList,
      envPages,
      status,
      fleet,
      vmsWithError,
      hostRequests: await sim.counts(),
      warnings: warnings.count(),
      seconds: (performance.now() - began) / 1000,
    };
  } finally {
    for (const step of undo.reverse()) await step().catch((err: unknown) => log(`${title}: cleanup failed: ${err instanceof Error ? err.message : String(err)}`));
  }
}

const perSecond = (unit: string) => (value: number) => (Number.isFinite(value) ? `${value.toFixed(0)} ${unit}/s` : "-");
const size = (bytes: number) => (bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`);

function scaleTables(results: readonly BackendScaleResult[], hosts: number, envs: number): string[] {
  const tenth = Math.max(1, Math.floor(envs / 10)).toLocaleString("en");
  const metrics: [string, (r: BackendScaleResult) => number, (v: number) => string][] = [
    [`register hosts (POST /api/hosts, ${CLIENTS} clients)`, (r) => r.register.perSecond, perSecond("hosts")],
    [`placements (POST /api/envs, ${CLIENTS} clients)`, (r) => r.create.perSecond, perSecond("envs")],
    ["POST /api/envs, p50", (r) => r.create.p50Ms, ms],
    ["POST /api/envs, p99", (r) => r.create.p99Ms, ms],
    [`POST /api/envs, p50 of the first ${tenth}`, (r) => r.create.firstTenthP50Ms, ms],
    [`POST /api/envs, p50 of the last ${tenth}`, (r) => r.create.lastTenthP50Ms, ms],
    ["event loop delay while placing, p99", (r) => r.eventLoopDelayP99Ms, ms],
    [`placements offered at ${PACED_RATE}/s (${pacedEnvs(envs).toLocaleString("en")} more): answered`, (r) => r.paced.perSecond, perSecond("envs")],
    [`POST /api/envs at ${PACED_RATE}/s offered, p50`, (r) => r.paced.p50Ms, ms],
    [`POST /api/envs at ${PACED_RATE}/s offered, p99`, (r) => r.paced.p99Ms, ms],
    [`event loop delay at ${PACED_RATE}/s offered, p99`, (r) => r.paced.eventLoopDelayP99Ms, ms],
    [`heartbeat round, ${hosts.toLocaleString("en")} hosts (median of ${HEARTBEAT_ROUNDS})`, (r) => percentile(r.heartbeatRoundMs, 50), ms],
    ["GET /api/envs, p50", (r) => percentile(r.envList.samplesMs, 50), ms],
    ["GET /api/envs, p99", (r) => percentile(r.envList.samplesMs, 99), ms],
    ["GET /api/envs, size", (r) => r.envList.bytes, size],
    [`GET /api/envs?limit=${ENV_PAGE}, page p50`, (r) => percentile(r.envPages.samplesMs, 50), ms],
    [`GET /api/envs?limit=${ENV_PAGE}, page p99`, (r) => percentile(r.envPages.samplesMs, 99), ms],
    [`GET /api/envs?limit=${ENV_PAGE}, page size`, (r) => r.envPages.bytes, size],
    ["GET /api/status, p50", (r) => percentile(r.status.samplesMs, 50), ms],
    ["GET /api/status, p99", (r) => percentile(r.status.samplesMs, 99), ms],
  ];
  const sqlite = results.find((r) => r.backend === "sqlite");
  const postgres = results.find((r) => r.backend === "postgres");
  const cell = (r: BackendScaleResult | undefined, value: (r: BackendScaleResult) => number, format: (v: number) => string) => (r ? format(value(r)) : "-");
  const rows = metrics.map(([label, value, format]) => [
    label,
    cell(sqlite, value, format),
    cell(postgres, value, format),
    sqlite && postgres ? ratio(value(postgres), value(sqlite)) : "-",
  ]);
  const title = `controller scale: ${hosts.toLocaleString("en")} simulated hosts, ${envs.toLocaleString("en")} envs × 1 VM`;
  const notes = results.map(
    (r) =>
      `${BACKEND_TITLES[r.backend]}: ${r.fleet.total_envs} envs and ${r.fleet.vms_running}/${r.fleet.total_vms} VMs running on ${r.fleet.hosts_online} hosts online, ` +
      `${r.vmsWithError} VMs with an error, ${r.create.failures + r.paced.failures} failed creates, ${r.warnings} controller warnings, ${r.seconds.toFixed(0)} s in all; ` +
      `the simulated hosts served ${Object.values(r.hostRequests).reduce((a, b) => a + b, 0)} requests (${r.hostRequests["GET /api/info"] ?? 0} GET /api/info)`,
  );
  return [
    `${table([title, "SQLite", "PostgreSQL", "PostgreSQL/SQLite"], rows)}\n` +
      `VMs of ${VM.cpu} vCPU / ${VM.mem} MiB / ${VM.disk} MiB disk, placed best fit; heartbeats every ${HEARTBEAT_MS / 1000} s throughout.\n${notes.join("\n")}`,
  ];
}

export async function runControllerScaleBench(options: ControllerScaleOptions = {}): Promise<ControllerScaleResult> {
  const hosts = options.hosts ?? positiveInteger("CORRAL_BENCH_SIM_HOSTS", 1000);
  const envs = options.envs ?? positiveInteger("CORRAL_BENCH_SIM_ENVS", 10_000);
  const backends = options.backends ?? backendsFromEnv();
  const log = options.log ?? (() => undefined);
  const results: BackendScaleResult[] = [];
  for (const backend of backends) results.push(await runBackend(backend, hosts, envs, log));
  return { backends: results, tables: scaleTables(results, hosts, envs) };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const result = await runControllerScaleBench({ log: (line) => process.stderr.write(`${line}\n`) });
  process.stdout.write(`\n${result.tables.join("\n\n")}\n`);
}
