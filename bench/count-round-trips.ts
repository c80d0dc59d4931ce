// How many statements one POST /api/envs sends to PostgreSQL: a controller over a few simulated hosts
// (bench/simulated-hosts.ts), creates run one at a time after a warm-up, every query of every pg client of
// the process counted (pg.Client.prototype.query wrapped), heartbeats out of the way.
//   node --import tsx bench/count-round-trips.ts   (CORRAL_BENCH_RT_CREATES, default 50)
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { startController } from "../src/controller/controller.ts";
import { ControllerClient } from "../src/sdk/controller-client.ts";
import { createLogger } from "../src/util/log.ts";
import { startPostgres } from "../test/helpers/postgres.ts";
import { startSimulatedHostsThread } from "./simulated-hosts.ts";

const creates = Number(process.env.CORRAL_BENCH_RT_CREATES ?? 50);
const statements = new Map<string, number>();
let counting = false;
const query = pg.Client.prototype.query;
pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
  if (counting) {
    const first = args[0] as string | { text?: string };
    const text = (typeof first === "string" ? first : (first.text ?? "?")).replace(/\s+/g, " ").slice(0, 90);
    statements.set(text, (statements.get(text) ?? 0) + 1);
  }
  return (query as (...a: unknown[]) => unknown).apply(this, args);
} as typeof query;

const stateDir = await mkdtemp(join(tmpdir(), "corral-rt-"));
const sim = await startSimulatedHostsThread(4);
const server = await startPostgres();
const controller = await startController({ port: 0, stateDir, databaseUrl: server.url, heartbeatMs: 3_600_000, log: createLogger({ level: "error" }) });
const client = new ControllerClient({ url: controller.url });
try {
  for (const uri of sim.uris) await client.hosts.add({ uri });
  const create = (i: number) => client.envs.create({ id: `rt-${i}`, owner: "bench", vms: [{ image: "base", cpu: 1, mem: 512, disk: 1024 }] });
  for (let i = 0; i < 5; i++) await create(i);
  counting = true;
  for (let i = 5; i < 5 + creates; i++) await create(i);
  counting = false;
  const total = [...statements.values()].reduce((a, b) => a + b, 0);
  process.stdout.write(`${(total / creates).toFixed(2)} statements per create (${creates} creates, 1 VM each)\n`);
  for (const [text, n] of [...statements].sort((a, b) => b[1] - a[1])) process.stdout.write(`${(n / creates).toFixed(2).padStart(6)}  ${text}\n`);
} finally {
  await client.close();
  await controller.stop();
  await server.stop();
  await sim.close();
  await rm(stateDir, { recursive: true, force: true });
}
