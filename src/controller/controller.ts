// `corral controller`: the composition root. Opens the store (SQLite in the state directory, or PostgreSQL),
// builds the services and the HTTP app, listens, and runs the leader's loops: heartbeats every interval, and
// every second the lifetime check and the recovery of operations interrupted by a controller's death (both
// also at once when it starts). With PostgreSQL several controllers may share the fleet: each serves the API
// and /ws, one (holding an advisory lock) runs the loops, and a follower takes over when it goes. Every
// process renews the leases of the environment operations it carries out.
import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { corralHome } from "../image/home.ts";
import type { Logger } from "../util/log.ts";
import { tightenStateDir } from "../util/private-state.ts";
import { corralVersion } from "../util/version.ts";
import type { RequestDeadlines } from "../http/deadlines.ts";
import { buildControllerApp } from "./app.ts";
import type { ControllerApp, ControllerContext } from "./context.ts";
import { DEFAULT_OVERCOMMIT, OPERATION_LEASE_MS, openFleetStore, type FleetStore, type Overcommit } from "./db/index.ts";
import { EnvService } from "./envs.ts";
import { FleetEvents } from "./events.ts";
import { Heartbeats } from "./heartbeat.ts";
import { HostConnections } from "./host-connections.ts";
import { HostDrivers } from "./host-driver.ts";
import { HostRegistry } from "./hosts.ts";
import { LiveUpdates } from "./live-updates.ts";
import { ControllerMetrics } from "./metrics.ts";
import { DEFAULT_WEB_ROOT } from "./static-files.ts";

export const CONTROLLER_DEFAULTS = { bind: "127.0.0.1", port: 9200, heartbeatMs: 2000, expiryMs: 1000, statsMs: 2000 } as const;

export interface ControllerOptions {
  bind?: string;
  port?: number;
  /** `postgres://…`; without it, SQLite in the state directory. */
  databaseUrl?: string;
  apiKey?: string;
  stateDir?: string;
  heartbeatMs?: number;
  expiryMs?: number;
  statsMs?: number;
  overcommit?: Overcommit;
  /** The dashboard's built files (default: the repository's web/dist). */
  webRoot?: string;
  /** How long clients may take to send requests (tests shorten them; DEFAULT_DEADLINES otherwise). */
  httpDeadlines?: Partial<RequestDeadlines>;
  log: Logger;
}

export interface RunningController {
  url: string;
  stateDir: string;
  store: FleetStore;
  app: ControllerApp;
  ctx: ControllerContext;
  stop(): Promise<void>;
}

/** Leases of operations in flight are renewed this often: a few missed renewals still keep them. */
const LEASE_RENEWAL_MS = OPERATION_LEASE_MS / 5;

/** How long a stop waits for a heartbeat or lifetime round under way. */
const ROUND_GRACE_MS = 5_000;

/** A loop of rounds on a timer; `settled` waits for the round under way, if any. */
interface LeaderLoop {
  timer: NodeJS.Timeout;
  settled(): Promise<void>;
}

/** Runs `task` now and every `ms` while this process leads, never two rounds at once. */
function leaderLoop(ms: number, isLeader: () => boolean, task: () => Promise<void>, log: Logger, what: string): LeaderLoop {
  let running: Promise<void> | undefined;
  const round = (): void => {
    if (running || !isLeader()) return;
    running = task()
      .catch((err: unknown) => log.error({ err }, `${what} failed`))
      .finally(() => {
        running = undefined;
      });
  };
  const timer = setInterval(round, ms);
  timer.unref();
  round();
  return { timer, settled: () => running ?? Promise.resolve() };
}

/** This process's id as the owner of environment operations: readable in logs, new at every start. */
function controllerInstanceId(): string {
  return `${hostname()}/${process.pid}/${randomBytes(4).toString("hex")}`;
}

export async function startController(options: ControllerOptions): Promise<RunningController> {
  const log = options.log;
  // By default beside the daemon's state (its own files: controller.db, controller.json), where the CLI looks.
  const stateDir = resolve(options.stateDir ?? corralHome().defaultStateDir);
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const opened = await tightenStateDir(stateDir);
  if (opened.length > 0) log.warn({ paths: opened }, "The state directory was open to other users: it is private again (0700, files 0600)");
  const store = await openFleetStore({ url: options.databaseUrl, stateDir });
  // Hosts registered without a token of their own are sent the controller's key, as TTstack's controller does.
  const drivers = new HostDrivers({ sharedKey: options.apiKey });
  const events = new FleetEvents(store, log);
  const metrics = new ControllerMetrics(() => store.stateCounts());
  const heartbeats = new Heartbeats({ store, drivers, events, log, metrics });
  const instance = controllerInstanceId();
  const envs = new EnvService({ store, drivers, events, log, overcommit: options.overcommit ?? DEFAULT_OVERCOMMIT, owner: instance, metrics });
  const live = new LiveUpdates({ store, drivers, events, log, statsIntervalMs: options.statsMs ?? CONTROLLER_DEFAULTS.statsMs });
  let leader = false;
  const ctx: ControllerContext = {
    store,
    hosts: new HostRegistry(store, drivers, events),
    connections: new HostConnections(store, drivers, events),
    envs,
    drivers,
    live,
    metrics,
    version: corralVersion(),
    webRoot: resolve(options.webRoot ?? DEFAULT_WEB_ROOT),
    isLeader: () => leader,
    refreshHost: async (hostId) => heartbeats.beat(await store.getHost(hostId)),
  };
  const app = await buildControllerApp(ctx, { apiKey: options.apiKey, log, deadlines: options.httpDeadlines });
  try {
    await app.listen({ host: options.bind ?? CONTROLLER_DEFAULTS.bind, port: options.port ?? CONTROLLER_DEFAULTS.port });
  } catch (err) {
    await app.close();
    await store.close();
    throw err;
  }
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : (options.port ?? CONTROLLER_DEFAULTS.port);
  const bind = options.bind ?? CONTROLLER_DEFAULTS.bind;
  const host = bind === "0.0.0.0" || bind === "::" ? "127.0.0.1" : bind.includes(":") ? `[${bind}]` : bind;
  const url = `http://${host}:${port}`;

  const heartbeatMs = options.heartbeatMs ?? CONTROLLER_DEFAULTS.heartbeatMs;
  const campaign = async (): Promise<void> => {
    const now = await store.tryAcquireLeadership().catch((err: unknown) => {
      log.warn({ err }, "Cannot check the leadership");
      return false;
    });
    if (now && !leader) log.info({ backend: store.backend }, "This controller leads: it runs heartbeats and expiry");
    leader = now;
  };
  await campaign();
  const renewal = setInterval(() => void envs.renewLeases().catch((err: unknown) => log.warn({ err }, "Cannot renew the leases of environment operations")), LEASE_RENEWAL_MS);
  const loops = [
    leaderLoop(
      heartbeatMs,
      () => leader,
      () => heartbeats.beatAll(),
      log,
      "A heartbeat round",
    ),
    leaderLoop(
      options.expiryMs ?? CONTROLLER_DEFAULTS.expiryMs,
      () => leader,
      async () => {
        await envs.collectExpired(new Date());
        await envs.recoverInterrupted(new Date());
      },
      log,
      "The lifetime check and recovery",
    ),
  ];
  const timers = [setInterval(() => void campaign(), heartbeatMs), renewal, ...loops.map((loop) => loop.timer)];
  timers[0]?.unref();
  renewal.unref();
  log.info({ url, state: store.location, backend: store.backend, auth: options.apiKey !== undefined, instance }, "Controller listening");

  let stopping: Promise<void> | undefined;
  return {
    url,
    stateDir,
    store,
    app,
    ctx,
    stop: () => {
      stopping ??= (async () => {
        for (const timer of timers) clearInterval(timer);
        // A round under way still reads and writes the store: closing it first failed each host's heartbeat
        // ("driver has already been destroyed"), and closing the drivers first would mark the hosts offline.
        // A round stuck on a silent host is not waited for past ROUND_GRACE_MS.
        await Promise.race([Promise.all(loops.map((loop) => loop.settled())), sleep(ROUND_GRACE_MS, undefined, { ref: false })]);
        await app.close();
        await drivers.closeAll();
        await store.close();
        log.info("Controller stopped");
      })();
      return stopping;
    },
  };
}
