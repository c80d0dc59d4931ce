// `corral up`: everything a new user needs in one command. (./corral up has already installed the Debian
// and npm packages with scripts/bootstrap.sh.) Fetches the kernel, builds the images, then runs a
// daemon and a fleet controller in the foreground, the daemon registered as the controller's first host.
import type { Command } from "commander";
import { startControllerFromFlags, stopOnSignals } from "./controller-command.ts";
import { startDaemonFromFlags, survivePromiseBugs, type DaemonFlags } from "./daemon-command.ts";

interface UpFlags extends DaemonFlags {
  controllerPort?: string;
  controllerBind?: string;
  database?: string;
  apiKey?: string;
  apiKeyFile?: string;
  controller?: boolean;
}

export function registerUpCommand(program: Command): void {
  program
    .command("up")
    .description("Set up this machine (kernel, images base and debian) and run a daemon and a fleet controller")
    .option("-c, --config <file>", "daemon configuration (YAML, Slicer's shape)")
    .option("--state-dir <dir>", "daemon and controller state directory")
    .option("--port <port>", "override the daemon's API port")
    .option("--controller-port <port>", "the controller's port", "9200")
    .option("--controller-bind <addr>", "the controller's address", "127.0.0.1")
    .option("--database <url>", "the controller's PostgreSQL (default: SQLite in the state directory)")
    .option("--api-key <key>", "require this key on the controller's API (ps shows it: prefer --api-key-file or env CORRAL_API_KEY)")
    .option("--api-key-file <file>", "read the controller's API key from FILE (mode 0600: no one else may read it)")
    .option("--no-controller", "run the daemon only")
    .action(async (flags: UpFlags) => {
      process.stderr.write("corral: set-up (guest kernel, images base and debian)\n");
      const { runSetup } = await import("../setup/setup.ts");
      await runSetup();
      const { createLogger } = await import("../util/log.ts");
      const log = createLogger();
      survivePromiseBugs(log, "daemon");
      const daemon = await startDaemonFromFlags(flags, log);
      let controllerUrl: string | undefined;
      let stopController = async (): Promise<void> => undefined;
      if (flags.controller !== false) {
        const controller = await startControllerFromFlags(
          { bind: flags.controllerBind, port: flags.controllerPort, database: flags.database, apiKey: flags.apiKey, apiKeyFile: flags.apiKeyFile, stateDir: daemon.stateDir },
          log,
        );
        await controller.registerHost({ id: daemon.hostId, uri: daemon.url, ...(daemon.token ? { token: daemon.token } : {}) });
        controllerUrl = controller.url;
        stopController = controller.stop;
      }
      stopOnSignals(log, async () => {
        await stopController();
        await daemon.stop();
      });
      const auth = daemon.config.api.authEnabled ? `on (token in ${daemon.stateDir}/auth/token)` : "off";
      const group = daemon.config.hostGroups[0]?.name ?? "sbox";
      process.stderr.write(
        [
          "",
          `Corral is up (accelerator ${daemon.accel.accel}):`,
          `  daemon      ${daemon.url}${daemon.socketPath ? ` and ${daemon.socketPath}` : ""} (auth ${auth})`,
          ...(controllerUrl ? [`  controller  ${controllerUrl} (dashboard and fleet API; this daemon is host ${JSON.stringify(daemon.hostId)})`] : []),
          "Try, in another terminal:",
          `  ./corral vm add ${group}                 # a sandbox, ready in a few seconds`,
          `  ./corral vm exec ${group}-1 -- uname -a`,
          ...(controllerUrl ? ["  ./corral env create demo --vm image=debian,cpu=1,mem=1024 --ssh-key ~/.ssh/id_ed25519.pub --lifetime 1h", "  ./corral status"] : []),
          "Stop with Ctrl-C (sandboxes are removed; services keep their disks).",
          "",
          "",
        ].join("\n"),
      );
    });
}
