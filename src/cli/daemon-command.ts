// `corral daemon`: runs the host daemon in the foreground until SIGINT or SIGTERM.
import type { Command } from "commander";
import type { RunningDaemon } from "../daemon/daemon.ts";
import type { Logger } from "../util/log.ts";
import { stopOnSignals } from "./controller-command.ts";

export interface DaemonFlags {
  config?: string;
  stateDir?: string;
  port?: string;
}

/** Starts the daemon from CLI flags; a bad configuration or a failed start exits with a message. */
export async function startDaemonFromFlags(flags: DaemonFlags, log: Logger): Promise<RunningDaemon> {
  // Loaded here, not at the top: other commands should not pay for the daemon's start-up.
  const { startDaemon } = await import("../daemon/daemon.ts");
  const { ConfigError } = await import("../daemon/config.ts");
  try {
    return await startDaemon({
      configPath: flags.config,
      stateDir: flags.stateDir,
      port: flags.port !== undefined ? Number(flags.port) : undefined,
      log,
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    log.debug({ err }, "start-up failed");
    process.stderr.write(`corral: cannot start the daemon: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

/** Logs a promise nobody waited for that failed: a bug, but one that must not take the API down with it. */
export function survivePromiseBugs(log: Logger, role: string): void {
  // The VMs would run on, unmanaged, until a restart. Logged with its stack, so that it can be found and fixed.
  process.on("unhandledRejection", (err) => log.error({ err }, `Unhandled rejection (a bug): the ${role} carries on`));
}

/** Starts the daemon and stops it gracefully on the first signal (a second one exits at once). */
export async function runDaemonForeground(flags: DaemonFlags): Promise<void> {
  const { createLogger } = await import("../util/log.ts");
  const log = createLogger();
  survivePromiseBugs(log, "daemon");
  const daemon = await startDaemonFromFlags(flags, log);
  stopOnSignals(log, daemon.stop);
}

export function registerDaemonCommand(program: Command): void {
  program
    .command("daemon")
    .description("Run the host daemon (Slicer-compatible API) in the foreground")
    .option("-c, --config <file>", 'YAML configuration (Slicer\'s shape); without it: sandbox group "sbox" on 127.0.0.1:8080')
    .option("--state-dir <dir>", "where VM disks, sockets and the database live")
    .option("--port <port>", "override config.api.port (0 picks a free port)")
    .action((flags: DaemonFlags) => runDaemonForeground(flags));
}
