// `corral controller`: runs the fleet controller in the foreground until SIGINT or SIGTERM, and records where
// it listens (controller.json, with the API key's 0600 file) so that `corral host|env|status` find it.
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Command } from "commander";
import { parseDuration } from "../protocol/duration.ts";
import type { Logger } from "../util/log.ts";
import { resolveSecret, warnOnStderr } from "./secret-options.ts";

export interface ControllerFlags {
  bind?: string;
  port?: string;
  database?: string;
  apiKey?: string;
  apiKeyFile?: string;
  stateDir?: string;
  heartbeat?: string;
  overcommit?: string;
  webRoot?: string;
}

/** `cpu=4,mem=1,disk=1` (any subset; the rest keep their defaults). */
export function parseOvercommit(text: string, defaults: { cpu: number; mem: number; disk: number }): { cpu: number; mem: number; disk: number } {
  const result = { ...defaults };
  for (const part of text.split(",")) {
    const [key, value] = part.split("=");
    const ratio = Number(value);
    if ((key !== "cpu" && key !== "mem" && key !== "disk") || value === undefined || !Number.isFinite(ratio) || ratio <= 0 || ratio > 64) {
      throw new Error(`--overcommit ${JSON.stringify(text)}: give cpu=, mem= or disk= with a ratio above 0 (e.g. "cpu=4,mem=1")`);
    }
    result[key] = ratio;
  }
  return result;
}

export interface ControllerHandle {
  url: string;
  stop(): Promise<void>;
  registerHost(body: { id: string; uri: string; token?: string }): Promise<void>;
}

/** Starts a controller from CLI flags; a bad flag or a failed start exits with a message. */
export async function startControllerFromFlags(flags: ControllerFlags, log: Logger): Promise<ControllerHandle> {
  const { startController } = await import("../controller/controller.ts");
  const { writeControllerInfo, removeControllerInfo } = await import("../controller/runtime-info.ts");
  const port = flags.port === undefined ? undefined : Number(flags.port);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) fail(`--port ${JSON.stringify(flags.port)} is not a port number`);
  let heartbeatMs: number | undefined;
  if (flags.heartbeat !== undefined) {
    try {
      heartbeatMs = parseDuration(flags.heartbeat, "--heartbeat");
    } catch (err) {
      fail((err as Error).message);
    }
  }
  const { DEFAULT_OVERCOMMIT } = await import("../controller/db/index.ts");
  let overcommit = DEFAULT_OVERCOMMIT;
  if (flags.overcommit !== undefined) {
    try {
      overcommit = parseOvercommit(flags.overcommit, DEFAULT_OVERCOMMIT);
    } catch (err) {
      fail((err as Error).message);
    }
  }
  let apiKey: string | undefined;
  try {
    apiKey = resolveSecret(
      { value: flags.apiKey, file: flags.apiKeyFile, env: process.env.CORRAL_API_KEY, flag: "--api-key", fileFlag: "--api-key-file", envName: "CORRAL_API_KEY" },
      warnOnStderr,
    );
  } catch (err) {
    fail((err as Error).message);
  }
  if (apiKey !== undefined && apiKey.length < 16) fail("The API key is too short: use at least 16 characters");
  let controller: Awaited<ReturnType<typeof startController>>;
  try {
    controller = await startController({
      bind: flags.bind,
      port,
      databaseUrl: flags.database,
      apiKey,
      stateDir: flags.stateDir,
      heartbeatMs,
      overcommit,
      webRoot: flags.webRoot,
      log,
    });
  } catch (err) {
    log.debug({ err }, "start-up failed");
    fail(`cannot start the controller: ${(err as Error).message}`);
  }
  const running = controller;
  let apiKeyFile: string | undefined;
  if (apiKey !== undefined) {
    const dir = join(running.stateDir, "auth");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    apiKeyFile = join(dir, "controller-api-key");
    await writeFile(apiKeyFile, `${apiKey}\n`, { mode: 0o600 });
    await chmod(apiKeyFile, 0o600);
  }
  await writeControllerInfo(running.stateDir, { url: running.url, api_key_file: apiKeyFile, pid: process.pid, started_at: new Date().toISOString() });
  return {
    url: running.url,
    stop: async () => {
      await removeControllerInfo(running.stateDir);
      await running.stop();
    },
    registerHost: async (body) => {
      await running.ctx.hosts.ensure(body);
    },
  };
}

function fail(message: string): never {
  process.stderr.write(`corral: ${message}\n`);
  process.exit(2);
}

/** Stops everything on the first signal (a second one exits at once). */
export function stopOnSignals(log: Logger, stop: () => Promise<void>): void {
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) process.exit(130);
    log.info({ signal }, "Signal received");
    void stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, "Stopping failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}

export function registerControllerCommand(program: Command): void {
  program
    .command("controller")
    .description("Run the fleet controller (TTstack's and Virtumancer's APIs over Corral daemons) in the foreground")
    .option("--bind <addr>", "address to listen on", "127.0.0.1")
    .option("--port <port>", "port to listen on (0 picks a free one)", "9200")
    .option("--database <url>", "postgres://USER@HOST:PORT/DB to share the fleet between controllers (default: SQLite in the state directory)")
    .option("--api-key <key>", "require Authorization: Bearer KEY on every route but the dashboard's files and /healthz (ps shows it: prefer --api-key-file or env CORRAL_API_KEY)")
    .option("--api-key-file <file>", "read the API key from FILE (mode 0600: no one else may read it)")
    .option("--state-dir <dir>", "where the SQLite database and controller.json live")
    .option("--heartbeat <duration>", "how often hosts are asked for their state", "2s")
    .option("--overcommit <ratios>", "how much may be reserved per unit a host has, e.g. cpu=4,mem=1,disk=1 (the default)")
    .option("--web-root <dir>", "the dashboard's built files (default: web/dist of this checkout)")
    .action(async (flags: ControllerFlags) => {
      const { createLogger } = await import("../util/log.ts");
      const log = createLogger();
      process.on("unhandledRejection", (err) => log.error({ err }, "Unhandled rejection (a bug): the controller carries on"));
      const controller = await startControllerFromFlags(flags, log);
      process.stderr.write(`Corral controller on ${controller.url}: add hosts with "corral host add HOST:PORT"\n`);
      stopOnSignals(log, controller.stop);
    });
}
