// The composition root of `corral daemon`: reads the configuration, decides the accelerator, recovers the
// previous daemon's VMs, starts the services and serves the API on TCP and, if configured, a unix socket.
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { connect } from "node:net";
import { join, resolve } from "node:path";
import { hostTscKhz, mergeAllMemoryPrefix, probeMemoryMerge, resolveAccel, startKsm, QemuEngine, QEMU_BINARY, processCommandLine, type AccelVerdict } from "../engine/index.ts";
import { corralHome, ImageCatalogue, ImageStore, OciImports, ociGuestRuntime, registerImageUser, type CorralHome } from "../image/index.ts";
import { HostIsolation, IpamStore, NetworkManager, type AttachmentProvider } from "../net/index.ts";
import { DefaultAttachments } from "../net/default-attachments.ts";
import { createIsolatedAttachment } from "../net/isolated-attachment.ts";
import type { Logger } from "../util/log.ts";
import { createPrivateFile, tightenStateDir } from "../util/private-state.ts";
import { requireProgram } from "../util/run.ts";
import { corralVersion, gitCommit } from "../util/version.ts";
import { DEFAULT_IMAGE, loadDaemonConfig, type DaemonConfig } from "./config.ts";
import { buildDaemonApp } from "./http/app.ts";
import { ensureToken, tokenFile } from "../http/auth.ts";
import { DEFAULT_DEADLINES, serverTimeouts, type RequestDeadlines } from "../http/deadlines.ts";
import type { DaemonApp } from "./http/context.ts";
import { DaemonMetrics } from "./metrics.ts";
import { Secrets } from "./secrets/index.ts";
import { CommitStore } from "./commits/commit-store.ts";
import { BUILDS_DIR } from "./builds/build-context.ts";
import { loadHostId } from "./host-identity.ts";
import { TemplateManager } from "./templates/template-manager.ts";
import { WarmPool } from "./templates/warm-pool.ts";
import { VmManager } from "./vm/vm-manager.ts";
import { Admission } from "./admission.ts";
import { LivenessChecks } from "./vm/liveness.ts";
import { countHealth } from "./vm/vm-condition.ts";
import { isLive } from "../protocol/vm-lifecycle.ts";
import { assertSocketPathsFit } from "./vm/vm-paths.ts";
import { VmStore } from "./vm/vm-store.ts";
import { storedOverride } from "./vm/vm-network.ts";
import { runtimeInfoFile, type DaemonRuntimeInfo } from "./runtime-info.ts";

export interface DaemonOptions {
  configPath?: string;
  stateDir?: string;
  home?: CorralHome;
  log: Logger;
  /** Overrides config.api.port (tests use 0 for a free port). */
  port?: number;
  /** How long clients may take to send requests (tests shorten them; DEFAULT_DEADLINES otherwise). */
  httpDeadlines?: Partial<RequestDeadlines>;
}

export interface RunningDaemon {
  url: string;
  socketPath: string | undefined;
  stateDir: string;
  config: DaemonConfig;
  accel: AccelVerdict;
  app: DaemonApp;
  /** The API token when auth is on (a controller registering this daemon needs it). */
  token: string | undefined;
  /** This host's id for fleet controllers (see host-identity.ts). */
  hostId: string;
  stop(): Promise<void>;
}

function lockFile(stateDir: string): string {
  return join(stateDir, "daemon.pid");
}

/**
 * One daemon per state directory. The pid file is taken before anything else happens, so a second daemon
 * started while the first is still probing or recovering is refused too. A pid file whose process is gone
 * (or is not a corral daemon) is stale and taken over.
 */
async function acquireStateLock(stateDir: string): Promise<() => Promise<void>> {
  const file = lockFile(stateDir);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: "wx", mode: 0o600 });
      return () => rm(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = Number(readFileSync(file, "utf8").trim());
      const args = Number.isInteger(pid) && pid > 0 ? processCommandLine(pid) : undefined;
      if (args && pid !== process.pid && args.some((a) => a.includes("daemon") || a.includes("corral"))) {
        throw new Error(`Another daemon (pid ${pid}) is using the state directory ${stateDir}: stop it first`);
      }
      await rm(file, { force: true });
    }
  }
  throw new Error(`Cannot take the lock file ${file}`);
}

/** True when something accepts connections on the unix socket at `path`. */
function socketInUse(path: string): Promise<boolean> {
  return new Promise((done) => {
    const probe = connect(path);
    probe.once("connect", () => {
      probe.destroy();
      done(true);
    });
    probe.once("error", () => done(false));
  });
}

/**
 * Serves the same application on a unix socket (mode 0600: with auth off, it grants full control), with the
 * same headers deadline and the same answers to malformed requests as the TCP listener.
 */
async function listenOnSocket(app: DaemonApp, socketPath: string, deadlines: RequestDeadlines): Promise<Server> {
  if (existsSync(socketPath)) {
    if (await socketInUse(socketPath)) throw new Error(`The socket ${socketPath} is in use by another process`);
    await rm(socketPath);
  }
  const server = createServer(serverTimeouts(deadlines), (req, res) => app.server.emit("request", req, res));
  server.on("upgrade", (req, socket, head) => app.server.emit("upgrade", req, socket, head));
  server.on("clientError", (err, socket) => app.server.emit("clientError", err, socket));
  await new Promise<void>((done, fail) => {
    server.once("error", fail);
    server.listen(socketPath, () => done());
  });
  await chmod(socketPath, 0o600);
  return server;
}

export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const home = options.home ?? corralHome();
  const config = loadDaemonConfig(options.configPath);
  const stateDir = resolve(options.stateDir ?? home.defaultStateDir);
  assertSocketPathsFit(stateDir);
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const opened = await tightenStateDir(stateDir);
  if (opened.length > 0) options.log.warn({ paths: opened }, "The state directory was open to other users: it is private again (0700, files 0600)");
  const releaseLock = await acquireStateLock(stateDir);
  let isolation: HostIsolation | undefined;
  try {
    // Before any VM is started or re-attached: a daemon that cannot wall guests off refuses to start.
    const { hostIsolation, hostAccess } = config.network;
    isolation = await HostIsolation.setUp({ config: { enabled: hostIsolation, hostAccess }, stateDir, log: options.log });
    isolation.watch();
    return await startLocked(options, config, stateDir, home, releaseLock, isolation);
  } catch (err) {
    await isolation?.release();
    await releaseLock();
    throw err;
  }
}

async function startLocked(
  options: DaemonOptions,
  config: DaemonConfig,
  stateDir: string,
  home: CorralHome,
  releaseLock: () => Promise<void>,
  isolation: HostIsolation,
): Promise<RunningDaemon> {
  const { log } = options;
  const guestGid = isolation.gid;

  const images = new ImageStore(home.images);
  // Before any VM is recovered or made: from now on this daemon's disks count as users of the store's images.
  await registerImageUser(home.images, stateDir).catch((err: unknown) =>
    log.warn(
      { err, images: home.images },
      "Cannot register this daemon's state directory in the image store: another daemon's image prune could remove versions this daemon's VMs use",
    ),
  );
  const catalogue = new ImageCatalogue(images);
  const imports = new OciImports({ home, store: images, runtime: ociGuestRuntime, insecureRegistry: config.insecureRegistry });
  const defaultImage = await images.resolve(config.hostGroups[0]?.image ?? DEFAULT_IMAGE);
  for (const group of config.hostGroups) await images.resolve(group.image);
  const qemuBinary = requireProgram(QEMU_BINARY, "qemu-system-x86");
  const accel = await resolveAccel(config.accel, {
    qemuBinary,
    kernel: defaultImage.kernel,
    initrd: defaultImage.initrd,
    cacheFile: join(home.cache, "accel.json"),
  });
  (accel.accel === "kvm" ? log.info.bind(log) : log.warn.bind(log))({ accel: accel.accel, cached: accel.cached }, accel.reason);
  // The one engine this daemon runs its machines with (see src/engine/machine.ts).
  const engine = new QemuEngine({ binary: qemuBinary, accel, mergeAllMemory: config.ksm ? memoryMergeLauncher(log) : undefined });

  const token = config.api.authEnabled ? await ensureToken(tokenFile(stateDir)) : undefined;
  if (token) log.info({ token_file: tokenFile(stateDir) }, "API auth is on: the bearer token is in the token file");

  // Created private before SQLite opens it: it holds the VMs' ssh_keys and userdata.
  createPrivateFile(join(stateDir, "corral.db"));
  const store = new VmStore(join(stateDir, "corral.db"));
  // Every machine's NIC: the network manager serves bridge and isolated VMs and hands user-mode VMs and
  // templates (detached TAPs in TAP-mode groups) to the engine's default attachments.
  const defaults = new DefaultAttachments((name) => config.hostGroups.find((g) => g.name === name), forwardAddressFor(config.api.bindAddress));
  const network = networkManager(config, stateDir, store, defaults, log);
  try {
    // Before recovery: bridges back, subnets checked against the host (an overlap refuses the start).
    await network.start();
  } catch (err) {
    store.close();
    throw err;
  }
  const metrics = new DaemonMetrics(() => store.countByState());
  const tscKhz = hostTscKhz();
  const commits = new CommitStore(stateDir);
  await commits.removeDebris();
  // Contexts of image builds the previous run was doing when it stopped (their builder VMs go with recovery).
  await rm(join(stateDir, BUILDS_DIR), { recursive: true, force: true });
  const admission = new Admission({
    config: config.admission,
    stateDir,
    // What max_vms limits: the group's VMs that hold a QEMU process or are being made.
    activeInGroup: (group) => store.listGroup(group).filter((r) => r.state === "creating" || isLive(r.state)).length,
    onRefused: (code, priority) => metrics.admissionRefused(code, priority),
  });
  const forwardAddress = forwardAddressFor(config.api.bindAddress);
  const templates = new TemplateManager({ stateDir, config, images, store, accel, tscKhz, engine, log, commits, guestGid, admission, network });
  const pool = new WarmPool({ stateDir, config, images, templates, accel, tscKhz, engine, log, guestGid, admission, network });
  const manager = new VmManager({ stateDir, config, store, images, accel, engine, log, metrics, tscKhz, templates, commits, pool, forwardAddress, guestGid, admission, network });
  metrics.observe({ healthCounts: () => countHealth(manager.list().map((r) => manager.healthOf(r).health)), pressure: () => admission.pressure() });
  const liveness = new LivenessChecks({ config: config.healthCheck, live: () => manager.liveVms(), log });
  const secrets = await Secrets.open(stateDir, manager, log);
  let ready = false;
  const hostId = await loadHostId(stateDir);
  const deadlines = { ...DEFAULT_DEADLINES, ...options.httpDeadlines };
  const app = await buildDaemonApp(
    { manager, secrets, images, catalogue, imports, accel, metrics, templates, isolation, stateDir, hostId, version: corralVersion(), gitCommit: gitCommit() },
    { token, log, isReady: () => ready, deadlines },
  );
  const socketPath = config.api.socket ? resolve(config.api.socket) : undefined;
  let unixServer: Server | undefined;
  try {
    // Both listeners first: a taken port or socket fails here, before any VM is touched. Until recovery is
    // done, requests get 503.
    await app.listen({ host: config.api.bindAddress, port: options.port ?? config.api.port });
    if (socketPath) unixServer = await listenOnSocket(app, socketPath, deadlines);
    // Recovery, then the network's reconcile (inside start), before the routes answer.
    await manager.start();
    network.watch();
    const unwalled = isolation.gid === undefined ? [] : isolation.unwalled(manager.list());
    if (unwalled.length > 0) {
      log.warn({ vms: unwalled }, "VMs re-attached from an earlier run are outside the wall between guests and this host's services: restart them to wall them off");
    }
    await templates.start();
    liveness.start();
  } catch (err) {
    await app.close();
    unixServer?.close();
    await network.stop();
    store.close();
    throw err;
  }
  ready = true;
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : config.api.port;
  const host = config.api.bindAddress.includes(":") ? `[${config.api.bindAddress}]` : config.api.bindAddress;
  const url = `http://${host}:${port}`;

  const info: DaemonRuntimeInfo = { pid: process.pid, url, auth: token !== undefined, started_at: new Date().toISOString() };
  if (socketPath) info.socket = socketPath;
  if (token) info.token_file = tokenFile(stateDir);
  // Written aside and renamed into place: a reader that sees the file must never see it half-written.
  await writeFile(`${runtimeInfoFile(stateDir)}.tmp`, `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 });
  await rename(`${runtimeInfoFile(stateDir)}.tmp`, runtimeInfoFile(stateDir));
  log.info({ url, socket: socketPath, state_dir: stateDir }, "Corral daemon listening");

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      log.info("Stopping: sandboxes are removed, services and persistent VMs are powered off");
      await app.close();
      if (unixServer) await new Promise<void>((done) => unixServer?.close(() => done()));
      await liveness.stop();
      await templates.stop();
      await pool.stop();
      await manager.stop();
      await network.stop();
      await isolation.release();
      store.close();
      await rm(runtimeInfoFile(stateDir), { force: true });
      if (socketPath) await rm(socketPath, { force: true });
      await releaseLock();
      log.info("Stopped");
    })();
    return stopping;
  };
  return { url, socketPath, stateDir, config, accel, app, token, hostId, stop };
}

/** The network service of bridge and isolated groups; its leases live in corral.db beside the records. */
function networkManager(config: DaemonConfig, stateDir: string, store: VmStore, base: AttachmentProvider, log: Logger): NetworkManager {
  return new NetworkManager({
    stateDir,
    groups: config.hostGroups.map((group, index) => ({ name: group.name, index, network: group.network, dnsServers: group.dnsServers })),
    hostIsolation: config.network.hostIsolation,
    hostAccess: config.network.hostAccess,
    portRange: config.network.portRange,
    vhost: config.network.vhost,
    ipam: new IpamStore(store.database),
    base,
    isolated: (input) => createIsolatedAttachment(input),
    log,
    overrideOf: (hostname) => {
      const record = store.get(hostname);
      return record ? storedOverride(record.networkPolicy) : undefined;
    },
    onLeased: (hostname, lease) => store.setAddress(hostname, lease.address, lease.mac),
  });
}

/**
 * Where VMs' forwarded ports (TTstack's port_map) listen: on the address the API listens on, so a client that
 * reaches the daemon reaches the ports. QEMU's user network forwards IPv4 only.
 */
export function forwardAddressFor(bindAddress: string): string {
  if (bindAddress === "::" || bindAddress === "0.0.0.0") return "0.0.0.0";
  return /^\d+\.\d+\.\d+\.\d+$/.test(bindAddress) ? bindAddress : "127.0.0.1";
}

/**
 * `ksm: true`: ksmd started when it was stopped, and QEMU's launcher when the kernel lets a whole process's
 * memory be merged (else only guest RAM is, which QEMU marks by itself). Each outcome is logged once.
 */
function memoryMergeLauncher(log: Logger): readonly string[] | undefined {
  const support = probeMemoryMerge();
  if (!support.ksm) {
    log.warn("config.ksm is on, but this kernel has no KSM (/sys/kernel/mm/ksm): no memory is merged");
    return undefined;
  }
  const running = startKsm();
  if (!running) log.warn("config.ksm is on, but ksmd is not running and could not be started (/sys/kernel/mm/ksm/run): nothing is merged until it runs");
  else if (!support.running) log.info("Started KSM (/sys/kernel/mm/ksm/run = 1) for config.ksm");
  const launcher = support.wholeProcess ? mergeAllMemoryPrefix() : undefined;
  if (launcher) log.info("KSM: all of each QEMU process's memory is mergeable (PR_SET_MEMORY_MERGE)");
  else log.info("KSM: guest RAM is mergeable; QEMU's own memory is not (PR_SET_MEMORY_MERGE across exec needs Linux 6.7)");
  return launcher;
}
