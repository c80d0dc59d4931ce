// `corral daemon`: runs the host daemon in the foreground until SIGINT or SIGTERM.
import type { Command } from "commander";

export interface DaemonFlags {
  config?: string;
  stateDir?: string;
  port?: string;
}

/** Starts the daemon and stops it gracefully on the first signal (a second one exits at once). */
export async function runDaemonForeground(flags: DaemonFlags, options: { banner?: boolean } = {}): Promise<void> {
  // Loaded here, not at the top: other commands should not pay for the daemon's start-up.
  const { startDaemon } = await import("../daemon/daemon.ts");
  const { ConfigError } = await import("../daemon/config.ts");
  const { createLogger } = await import("../util/log.ts");
  const log = createLogger();
  // A promise nobody waited for failed: a bug, but one that must not take the API down with it (the VMs
  // would run on, unmanaged, until a restart). Logged with its stack, so that it can be found and fixed.
  process.on("unhandledRejection", (err) => log.error({ err }, "Unhandled rejection (a bug): the daemon carries on"));
  let daemon;
  try {
    daemon = await startDaemon({
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
  if (options.banner) {
    const auth = daemon.config.api.authEnabled ? `on (token in ${daemon.stateDir}/auth/token)` : "off";
    const group = daemon.config.hostGroups[0]?.name ?? "sbox";
    process.stderr.write(
      [
        "",
        `Corral is up: ${daemon.url}${daemon.socketPath ? ` and ${daemon.socketPath}` : ""} (auth ${auth}, accelerator ${daemon.accel.accel})`,
        "Try, in another terminal:",
        `  ./corral vm add ${group}                 # a sandbox, ready in a few seconds`,
        `  ./corral vm exec ${group}-1 -- uname -a`,
        `  curl -s -X POST '${daemon.url}/hostgroup/${group}/nodes?wait=agent' -d '{}'`,
        "Stop with Ctrl-C (sandboxes are removed; services keep their disks).",
        "",
        "",
      ].join("\n"),
    );
  }
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) process.exit(130);
    log.info({ signal }, "Signal received");
    void daemon.stop().then(() => process.exit(0), (err: unknown) => {
      log.error({ err }, "Stopping failed");
      process.exit(1);
    });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}

export function registerDaemonCommand(program: Command): void {
  program
    .command("daemon")
    .description("Run the host daemon (Slicer-compatible API) in the foreground")
    .option("-c, --config <file>", "YAML configuration (Slicer's shape); without it: sandbox group \"sbox\" on 127.0.0.1:8080")
    .option("--state-dir <dir>", "where VM disks, sockets and the database live")
    .option("--port <port>", "override config.api.port (0 picks a free port)")
    .action((flags: DaemonFlags) => runDaemonForeground(flags));
}
