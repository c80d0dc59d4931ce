// Runs a real `corral controller` in a child process for integration tests: its own state directory (or a
// PostgreSQL URL), a free port, fast heartbeats. It can be stopped and killed like a TestDaemon.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { ControllerClient } from "../../src/sdk/index.ts";
import { controllerAnswerType, envelopeError } from "../fixtures/ttstack/contract.ts";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

export class TestController {
  private child: ChildProcess | undefined;
  private logs = "";
  url = "";
  client!: ControllerClient;

  private constructor(
    readonly stateDir: string,
    readonly apiKey: string,
  ) {}

  static async create(apiKey = "test-api-key-0123456789"): Promise<TestController> {
    return new TestController(await mkdtemp(join(tmpdir(), "corral-c-")), apiKey);
  }

  get log(): string {
    return this.logs;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with how the process ended (e.g. "SIGKILL" at an armed crash point); rejects after `timeoutMs`. */
  async exited(timeoutMs = 120_000): Promise<number | NodeJS.Signals> {
    const child = this.child;
    if (!child) throw new Error("The test controller was never started");
    const deadline = Date.now() + timeoutMs;
    while (child.exitCode === null && child.signalCode === null) {
      if (Date.now() > deadline) throw new Error(`The controller did not exit in time:\n${this.logs}`);
      await sleep(50);
    }
    await this.client.close().catch(() => undefined);
    return child.exitCode ?? (child.signalCode as NodeJS.Signals);
  }

  /**
   * Starts the controller and resolves once it has written controller.json (it is listening). `env` adds to
   * its environment (e.g. CORRAL_CRASH_AT, to make it die at a named point of an operation).
   */
  async start(extraArgs: string[] = [], env: Record<string, string> = {}): Promise<void> {
    const infoFile = join(this.stateDir, "controller.json");
    await rm(infoFile, { force: true });
    const child = spawn(
      process.execPath,
      ["--import", "tsx", CLI, "controller", "--state-dir", this.stateDir, "--port", "0", "--heartbeat", "500ms", ...extraArgs],
      // The key as the environment variable, not --api-key: the flag would put it in `ps` (and warns so).
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, CORRAL_LOG_LEVEL: "info", CORRAL_API_KEY: this.apiKey, ...env } },
    );
    this.child = child;
    child.stdout?.on("data", (chunk: Buffer) => (this.logs += chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => (this.logs += chunk.toString()));
    const deadline = Date.now() + 60_000;
    while (!existsSync(infoFile)) {
      if (child.exitCode !== null) throw new Error(`The controller exited with code ${child.exitCode}:\n${this.logs}`);
      if (Date.now() > deadline) throw new Error(`The controller did not start in time:\n${this.logs}`);
      await sleep(50);
    }
    this.url = (JSON.parse(readFileSync(infoFile, "utf8")) as { url: string }).url;
    this.client = new ControllerClient({ url: this.url, apiKey: this.apiKey });
  }

  /**
   * An HTTP call with the API key (or without, or with another); the status, the parsed body as `raw`, and as
   * `body` the same with TTstack's envelope of a success unwrapped (`{"ok":true,"data":X}` gives X,
   * `{"ok":true}` undefined): the TTstack routes' payloads read like any other answer. The envelope itself is
   * checked on every call to a TTstack route against TTstack's own types (test/fixtures/ttstack/contract.ts).
   */
  async call<T = unknown>(method: string, path: string, body?: unknown, key: string | null = this.apiKey): Promise<{ status: number; body: T; raw: unknown }> {
    const headers: Record<string, string> = key === null ? {} : { authorization: `Bearer ${key}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(`${this.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    const raw = (text ? JSON.parse(text) : undefined) as unknown;
    // Every answer of a TTstack route, whichever test makes the call, is checked against TTstack's own types.
    const type = controllerAnswerType(method, path, response.status);
    const wrong = type === undefined ? undefined : envelopeError(type, raw);
    if (wrong !== undefined) throw new Error(`${method} ${path} answered ${response.status} with what TTstack's ApiResp<${type}> cannot read: ${wrong}: ${text.slice(0, 300)}`);
    return { status: response.status, body: unwrapSuccess(raw) as T, raw };
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const child = this.child;
    // A child killed by a signal has no exit code, only a signal code: it is gone all the same.
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await this.client.close().catch(() => undefined);
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    await exited;
  }

  async dispose(): Promise<void> {
    await this.stop().catch(() => undefined);
    await rm(this.stateDir, { recursive: true, force: true });
  }
}

/** TTstack's envelope of a success, unwrapped to its data; anything else as it is. */
export function unwrapSuccess(body: unknown): unknown {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return body;
  const envelope = (body as { ok?: unknown }).ok === true && Object.keys(body).every((key) => key === "ok" || key === "data");
  return envelope ? (body as { data?: unknown }).data : body;
}
