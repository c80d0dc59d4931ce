// `corral up`: everything a new user needs in one command. (./corral up has already installed the Debian
// and npm packages with scripts/bootstrap.sh.) Fetches the kernel, builds the images, then runs a
// daemon and a fleet controller in the foreground, the daemon registered as the controller's first host.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { collect } from "./output.ts";
import { groupNetworkLines, upConfigYaml, type UpNetworkFlags } from "./up-network.ts";
import { startControllerFromFlags, stopOnSignals } from "./controller-command.ts";
import { startDaemonFromFlags, survivePromiseBugs, type DaemonFlags } from "./daemon-command.ts";

interface UpFlags extends DaemonFlags, UpNetworkFlags {
  controllerPort?: string;
  controllerBind?: string;
  database?: string;
  apiKey?: string;
  apiKeyFile?: string;
  controller?: boolean;
}

/** scripts/bootstrap.sh (Debian packages), its output on stderr; a failure ends `corral up`. */
async function runBootstrap(script: string): Promise<void> {
  const { spawn } = await import("node:child_process");
  const code = await new Promise<number | null>((resolve) => spawn("sh", [script], { stdio: ["ignore", 2, 2] }).once("exit", resolve));
  if (code !== 0) {
    process.stderr.write(`corral: ${script} failed (exit ${code})\n`);
    process.exit(1);
  }
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
    .option("--net <mode>", "the default host group's network: user (default, no root), bridge or isolated (root)")
    .option("--cidr <subnet>", "bridge: the VMs' subnet, e.g. 192.168.137.0/24 (the bridge takes .1)")
    .option("--range <range>", "bridge: the addresses handed out (A-B); isolated: the CIDR cut into /30 blocks")
    .option("--allow <entries>", "egress allowed (CIDR, address, ADDRESS:PORT; repeatable)", collect)
    .option("--drop <entries>", "egress dropped (as --allow)", collect)
    .action(async (flags: UpFlags) => {
      // --net writes the default group's network: into a configuration of its own (read once at start).
      let yaml: string | undefined;
      try {
        yaml = upConfigYaml(flags);
      } catch (err) {
        process.stderr.write(`corral: ${(err as Error).message}\n`);
        process.exit(2);
      }
      if (yaml !== undefined && flags.config !== undefined) {
        process.stderr.write("corral: give --net in the configuration file (config.host_groups[].network) or leave out --config\n");
        process.exit(2);
      }
      if (yaml !== undefined) {
        // Checked here so that a bad --cidr is named as the flags' problem and nothing is left in /tmp.
        const { ConfigError, parseDaemonConfig } = await import("../daemon/config.ts");
        try {
          parseDaemonConfig(yaml, "the --net flags");
        } catch (err) {
          process.stderr.write(`${err instanceof ConfigError ? err.message : String(err)}\n`);
          process.exit(2);
        }
      }
      const generated = yaml === undefined ? undefined : await mkdtemp(join(tmpdir(), "corral-up-"));
      if (generated !== undefined && yaml !== undefined) {
        await writeFile(join(generated, "config.yaml"), yaml, { mode: 0o600 });
        flags.config = join(generated, "config.yaml");
      }
      const { FROM_SOURCES, packagePath } = await import("../util/package-root.ts");
      // The checkout's ./corral launcher ran the bootstrap already; an installed package's CLI runs it here.
      if (!FROM_SOURCES) await runBootstrap(packagePath("scripts", "bootstrap.sh"));
      process.stderr.write("corral: set-up (guest kernel, images base and debian)\n");
      const { runSetup } = await import("../setup/setup.ts");
      await runSetup();
      const { createLogger } = await import("../util/log.ts");
      const log = createLogger();
      survivePromiseBugs(log, "daemon");
      const daemon = await startDaemonFromFlags(flags, log).finally(() => (generated ? rm(generated, { recursive: true, force: true }) : undefined));
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
      const cli = FROM_SOURCES ? "./corral" : "corral";
      process.stderr.write(
        [
          "",
          `Corral is up (accelerator ${daemon.accel.accel}):`,
          `  daemon      ${daemon.url}${daemon.socketPath ? ` and ${daemon.socketPath}` : ""} (auth ${auth})`,
          ...(controllerUrl ? [`  controller  ${controllerUrl} (dashboard and fleet API; this daemon is host ${JSON.stringify(daemon.hostId)})`] : []),
          ...groupNetworkLines(daemon.config.hostGroups, process.getuid?.() ?? 0),
          "Try, in another terminal:",
          `  ${cli} vm add ${group}                 # a sandbox, ready in a few seconds`,
          `  ${cli} vm exec ${group}-1 -- uname -a`,
          ...(controllerUrl ? [`  ${cli} env create demo --vm image=debian,cpu=1,mem=1024 --ssh-key ~/.ssh/id_ed25519.pub --lifetime 1h`, `  ${cli} status`] : []),
          "Stop with Ctrl-C (sandboxes are removed; services keep their disks).",
          "",
          "",
        ].join("\n"),
      );
    });
}
