// Runs a real `corral daemon` in a child process for integration tests: its own state directory, a free
// port, optional config. The child can be stopped gracefully or killed with -9 and started again.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { findProcessesWithArgument } from "../../src/engine/index.ts";
import { CorralClient } from "../../src/sdk/index.ts";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

/** A small sandbox group keeps tests light on this machine's memory. */
export const TEST_CONFIG = `config:
  host_groups:
    - name: sbox
      count: 0
      vcpu: 1
      ram_mb: 512
`;

/** The same with the API token required (it is in STATE_DIR/auth/token). */
export const AUTH_TEST_CONFIG = TEST_CONFIG.replace("config:\n", "config:\n  api:\n    auth:\n      enabled: true\n");

/** QEMU processes running VMs of the daemon with this state directory. */
export function qemuPids(stateDir: string): number[] {
  return findProcessesWithArgument(`${stateDir}/vms/`)
    .filter((p) => p.args[0]?.includes("qemu"))
    .map((p) => p.pid);
}

export interface DaemonRun {
  url: string;
  stateDir: string;
  client: CorralClient;
  child: ChildProcess;
  output(): string;
}

export class TestDaemon {
  private run: DaemonRun | undefined;
  private logs = "";

  private constructor(
    readonly stateDir: string,
    readonly configPath: string,
  ) {}

  /**
   * A daemon with a fresh state directory under /tmp (short enough for unix socket paths), or in `stateDir`
   * when given (a filesystem the test mounted there); its config file is written beside it.
   */
  static async create(config: string | ((stateDir: string) => string) = TEST_CONFIG, options: { stateDir?: string } = {}): Promise<TestDaemon> {
    const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), "corral-t-")));
    const configPath = options.stateDir ? `${stateDir}.config.yaml` : join(stateDir, "config.yaml");
    await writeFile(configPath, typeof config === "function" ? config(stateDir) : config);
    return new TestDaemon(stateDir, configPath);
  }

  /** Replaces the configuration the next start reads. */
  async reconfigure(config: string): Promise<void> {
    await writeFile(this.configPath, config);
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

  /** Starts the daemon and resolves once it has written daemon.json (it is listening and recovered). */
  async start(extraArgs: string[] = [], token?: string): Promise<DaemonRun> {
    const infoFile = join(this.stateDir, "daemon.json");
    await rm(infoFile, { force: true });
    const child = spawn(process.execPath, ["--import", "tsx", CLI, "daemon", "--state-dir", this.stateDir, "--config", this.configPath, "--port", "0", ...extraArgs], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, CORRAL_LOG_LEVEL: "info" },
    });
    child.stdout?.on("data", (chunk: Buffer) => (this.logs += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (this.logs += chunk.toString()));
    const deadline = Date.now() + 60_000;
    while (!existsSync(infoFile)) {
      if (child.exitCode !== null) throw new Error(`The daemon exited with code ${child.exitCode}:\n${this.logs}`);
      if (Date.now() > deadline) throw new Error(`The daemon did not start in time:\n${this.logs}`);
      await sleep(50);
    }
    const info = JSON.parse(readFileSync(infoFile, "utf8")) as { url: string; token_file?: string };
    const tokenValue = token ?? (info.token_file ? readFileSync(info.token_file, "utf8").trim() : undefined);
    this.run = { url: info.url, stateDir: this.stateDir, client: new CorralClient({ url: info.url, token: tokenValue }), child, output: () => this.logs };
    return this.run;
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

  /** Stops the daemon (gracefully, which removes its sandboxes) and deletes the state directory. */
  async dispose(): Promise<void> {
    await this.stop().catch(() => undefined);
    await rm(this.stateDir, { recursive: true, force: true });
    if (this.configPath.endsWith(".config.yaml")) await rm(this.configPath, { force: true });
  }
}
