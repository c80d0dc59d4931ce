// Runs a real `corral daemon` in a child process for integration tests: its own state directory, a free
// port, optional config. The child can be stopped gracefully or killed with -9 and started again. With
// `netns` the daemon runs inside a network namespace the test made (test/helpers/netns.ts) and the test
// talks to it through a unix socket in its state directory.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseDocument } from "yaml";
import { findProcessesWithArgument } from "../../src/engine/index.ts";
import { CorralClient } from "../../src/sdk/index.ts";
import type { TestNetns } from "./netns.ts";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

/** A small sandbox group keeps tests light on this machine's memory. */
export const TEST_CONFIG = `config:
  host_groups:
    - name: sbox
      image: base
      count: 0
      vcpu: 1
      ram_mb: 512
`;

/** One group per way a sandbox is made: `cold` boots cold, `tmpl` clones its template, `pool` takes warm-pool clones. */
export const CREATE_PATHS_CONFIG = `config:
  host_groups:
    - name: cold
      image: base
      vcpu: 1
      ram_mb: 512
      template: false
    - name: tmpl
      image: base
      vcpu: 1
      ram_mb: 512
    - name: pool
      image: base
      vcpu: 1
      ram_mb: 512
      warm_pool: 1
`;

/** The same with the API token required (it is in STATE_DIR/auth/token). */
export const AUTH_TEST_CONFIG = TEST_CONFIG.replace("config:\n", "config:\n  api:\n    auth:\n      enabled: true\n");

/** QEMU processes running VMs of the daemon with this state directory. */
export function qemuPids(stateDir: string): number[] {
  return findProcessesWithArgument(`${stateDir}/vms/`)
    .filter((p) => p.args[0]?.includes("qemu"))
    .map((p) => p.pid);
}

/** Whether a process runs (a zombie waiting to be reaped does not count). */
export function processRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /s.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/**
 * QEMU processes of named VMs of this state directory: warm-pool clones (`vms/.pool-*`) left out. A taken
 * pool clone keeps its pool folder's paths in its arguments, so it is left out too: follow it by pid.
 */
export function vmQemuPids(stateDir: string): number[] {
  return findProcessesWithArgument(`${stateDir}/vms/`)
    .filter((p) => p.args[0]?.includes("qemu") && !p.args.some((a) => a.includes(`${stateDir}/vms/.pool-`)))
    .map((p) => p.pid);
}

export interface DaemonRun {
  /** `http://127.0.0.1:PORT`, or `unix:STATE/api.sock` for a daemon in a namespace (fetch() cannot use it: see request()). */
  url: string;
  stateDir: string;
  client: CorralClient;
  child: ChildProcess;
  output(): string;
}

export interface TestDaemonOptions {
  /** A filesystem the test mounted: the state directory (the config goes beside it). */
  stateDir?: string;
  /**
   * Run the daemon in this network namespace (`nsenter --net=...`), its API on a unix socket in the state
   * directory (config.api.socket is set in the config written). The namespace's dispose disposes the daemon
   * first, so its QEMUs are killed before the namespace goes.
   */
  netns?: TestNetns;
  /** Programs the daemon is exec'd through inside the namespace, e.g. `setpriv --bounding-set=-net_admin --`. */
  wrap?: readonly string[];
}

/** A response read whole, whatever its status (for routes the SDK has no method for, over TCP or the socket). */
export interface RawResponse {
  status: number;
  body: unknown;
  text: string;
}

/** Sets config.api.socket in a YAML config (keeping everything else as written). */
function withSocket(config: string, socketPath: string): string {
  const doc = parseDocument(config);
  doc.setIn(["config", "api", "socket"], socketPath);
  return doc.toString();
}

export class TestDaemon {
  private run: DaemonRun | undefined;
  private logs = "";

  private constructor(
    readonly stateDir: string,
    readonly configPath: string,
    private readonly options: TestDaemonOptions = {},
  ) {}

  /** The unix socket a daemon in a namespace serves its API on. */
  get socketPath(): string {
    return join(this.stateDir, "api.sock");
  }

  get netns(): TestNetns | undefined {
    return this.options.netns;
  }

  private render(config: string): string {
    return this.options.netns ? withSocket(config, this.socketPath) : config;
  }

  /**
   * A daemon with a fresh state directory under /tmp (short enough for unix socket paths), or in `stateDir`
   * when given (a filesystem the test mounted there); its config file is written beside it.
   */
  static async create(config: string | ((stateDir: string) => string) = TEST_CONFIG, options: TestDaemonOptions = {}): Promise<TestDaemon> {
    const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), "corral-t-")));
    const configPath = options.stateDir ? `${stateDir}.config.yaml` : join(stateDir, "config.yaml");
    const daemon = new TestDaemon(stateDir, configPath, options);
    await writeFile(configPath, daemon.render(typeof config === "function" ? config(stateDir) : config));
    options.netns?.onDispose(() => daemon.dispose());
    return daemon;
  }

  /** Replaces the configuration the next start reads. */
  async reconfigure(config: string): Promise<void> {
    await writeFile(this.configPath, this.render(config));
  }

  get current(): DaemonRun {
    if (!this.run) throw new Error("The test daemon is not running");
    return this.run;
  }

  get client(): CorralClient {
    return this.current.client;
  }

  get url(): string {
    return this.current.url;
  }

  get log(): string {
    return this.logs;
  }

  /**
   * Starts the daemon and resolves once it has written daemon.json (it is listening and recovered). `env`
   * adds to the child's environment (e.g. CORRAL_CRASH_AT).
   */
  async start(extraArgs: string[] = [], token?: string, env: Record<string, string> = {}): Promise<DaemonRun> {
    const infoFile = join(this.stateDir, "daemon.json");
    await rm(infoFile, { force: true });
    const argv = [process.execPath, "--import", "tsx", CLI, "daemon", "--state-dir", this.stateDir, "--config", this.configPath, "--port", "0", ...extraArgs];
    const netns = this.options.netns;
    // nsenter and setpriv exec what they run: the child's pid stays the daemon's (kill9() kills the daemon).
    const full = netns ? [...netns.prefix, ...(this.options.wrap ?? []), ...argv] : argv;
    const child = spawn(full[0] as string, full.slice(1), {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, CORRAL_LOG_LEVEL: "info", ...env },
    });
    child.stdout?.on("data", (chunk: Buffer) => (this.logs += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (this.logs += chunk.toString()));
    const deadline = Date.now() + 60_000;
    while (!existsSync(infoFile)) {
      if (child.exitCode !== null) throw new Error(`The daemon exited with code ${child.exitCode}:\n${this.logs}`);
      if (Date.now() > deadline) throw new Error(`The daemon did not start in time:\n${this.logs}`);
      await sleep(50);
    }
    const info = JSON.parse(readFileSync(infoFile, "utf8")) as { url: string; socket?: string; token_file?: string };
    const tokenValue = token ?? (info.token_file ? readFileSync(info.token_file, "utf8").trim() : undefined);
    // The TCP port of a daemon in a namespace is the namespace's: the test reaches it through the socket.
    const url = netns ? `unix:${info.socket ?? this.socketPath}` : info.url;
    this.run = { url, stateDir: this.stateDir, client: new CorralClient({ url, token: tokenValue }), child, output: () => this.logs };
    return this.run;
  }

  /**
   * One request through the client's connection (TCP or the unix socket), read whole whatever its status:
   * for the routes the SDK has no method for (TTstack's /api/vms, PATCH /vm/HOST/network) and for errors.
   */
  async request(method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE", path: string, body?: unknown): Promise<RawResponse> {
    const response = await this.client.transport.request(method, path, {
      body: body === undefined ? undefined : JSON.stringify(body),
      contentType: body === undefined ? undefined : "application/json",
      timeoutMs: 300_000,
    });
    const text = await response.body.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // not JSON: the text says it
    }
    return { status: response.statusCode, body: parsed, text };
  }

  /** SIGTERM and wait: the graceful path. */
  async stop(): Promise<number | null> {
    const run = this.run;
    if (!run) return null;
    this.run = undefined;
    await run.client.close();
    if (run.child.exitCode !== null) return run.child.exitCode;
    const exited = new Promise<number | null>((resolve) => run.child.once("exit", (code) => resolve(code)));
    run.child.kill("SIGTERM");
    return exited;
  }

  /** Waits for the daemon to die by itself (a crash point); resolves with the signal that ended it. */
  async died(timeoutMs = 120_000): Promise<NodeJS.Signals | null> {
    const run = this.current;
    const child = run.child;
    if (child.exitCode === null && child.signalCode === null) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`The daemon did not die within ${timeoutMs} ms:\n${this.logs}`)), timeoutMs);
        child.once("exit", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.run = undefined;
    await run.client.close();
    return child.signalCode;
  }

  /** kill -9: VMs keep running, nothing is cleaned up. */
  async kill9(): Promise<void> {
    const run = this.run;
    if (!run) return;
    this.run = undefined;
    await run.client.close();
    const exited = new Promise<void>((resolve) => run.child.once("exit", () => resolve()));
    run.child.kill("SIGKILL");
    await exited;
  }

  /**
   * Stops the daemon (gracefully, which removes its sandboxes) and deletes the state directory. A daemon that
   * stopped gracefully must leave no QEMU process of its state directory behind: any left is killed and the
   * dispose fails, naming them. (VMs of a daemon the test killed with -9 are killed without complaint.)
   */
  async dispose(): Promise<void> {
    const wasRunning = this.run !== undefined;
    const code = await this.stop().catch(() => undefined);
    const left = qemuPids(this.stateDir);
    for (const pid of left) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    await rm(this.stateDir, { recursive: true, force: true });
    if (this.configPath.endsWith(".config.yaml")) await rm(this.configPath, { force: true });
    if (wasRunning && code === 0 && left.length > 0) {
      throw new Error(`QEMU processes outlived the daemon of ${this.stateDir} that stopped gracefully: ${left.join(", ")}`);
    }
  }
}
