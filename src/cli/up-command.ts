// `corral up`: everything a new user needs in one command. (./corral up has already installed the Debian
// and npm packages with scripts/bootstrap.sh.) Fetches the kernel, builds the default image, then runs the
// daemon in the foreground.
import type { Command } from "commander";
import { runDaemonForeground, type DaemonFlags } from "./daemon-command.ts";

export function registerUpCommand(program: Command): void {
  program
    .command("up")
    .description("Set up this machine (kernel, default image) and run the daemon")
    .option("-c, --config <file>", "daemon configuration (YAML, Slicer's shape)")
    .option("--state-dir <dir>", "daemon state directory")
    .option("--port <port>", "override the API port")
    .action(async (flags: DaemonFlags) => {
      process.stderr.write("corral: set-up (guest kernel, default image)\n");
      const { runSetup } = await import("../setup/setup.ts");
      await runSetup();
      await runDaemonForeground(flags, { banner: true });
    });
}
