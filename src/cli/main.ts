// The `corral` command line. Each command group's module is loaded only when that group is run (all of them
// for `corral --help`), so that a command pays for its own imports only: `corral --version` reads commander
// and package.json, `corral vm list` the SDK, and neither the daemon's nor the controller's code.
import { Command } from "commander";
import { corralVersion } from "../util/version.ts";

// A reader that goes away (`corral vm exec X -- cat big | head`) ends the command quietly with the status a
// shell gives a program killed by SIGPIPE (128 + 13), as it would end a C tool, instead of a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(141);
    throw err;
  });
}

/** `corral vm …` and `corral commit …`: the vm group with everything other modules add to it. */
async function registerVmGroup(program: Command): Promise<void> {
  const [vmCommands, power, top, commits, background, copy, shellForward] = await Promise.all([
    import("./vm-commands.ts"),
    import("./power-commands.ts"),
    import("./top-command.ts"),
    import("./commit-commands.ts"),
    import("./background-commands.ts"),
    import("./cp-command.ts"),
    import("./shell-forward-commands.ts"),
  ]);
  const vm = vmCommands.registerVmCommands(program);
  power.registerPowerCommands(vm);
  top.registerTopCommand(vm);
  commits.registerCommitCommands(program, vm);
  background.registerBackgroundCommands(program);
  copy.registerCopyCommands(program);
  shellForward.registerShellAndForwardCommands(program);
}

/** Top-level command names and how to register them, in the order `corral --help` lists them. */
const GROUPS: [names: readonly string[], register: (program: Command) => Promise<unknown>][] = [
  [["up"], async (p) => (await import("./up-command.ts")).registerUpCommand(p)],
  [["daemon"], async (p) => (await import("./daemon-command.ts")).registerDaemonCommand(p)],
  [["controller"], async (p) => (await import("./controller-command.ts")).registerControllerCommand(p)],
  [["vm", "commit"], registerVmGroup],
  [["secret"], async (p) => (await import("./secret-commands.ts")).registerSecretCommands(p)],
  [["image"], async (p) => (await import("./image-commands.ts")).registerImageCommands(p)],
  [["template"], async (p) => (await import("./template-commands.ts")).registerTemplateCommands(p)],
  [["host"], async (p) => (await import("./host-commands.ts")).registerHostCommands(p)],
  [["env"], async (p) => (await import("./env-commands.ts")).registerEnvCommands(p)],
  [["status"], async (p) => (await import("./status-command.ts")).registerStatusCommand(p)],
  [["service"], async (p) => (await import("./service-command.ts")).registerServiceCommands(p)],
];

const program = new Command();
program.name("corral").description("Real Linux micro-VMs on demand").version(corralVersion());
const first = process.argv[2];
const chosen = GROUPS.find(([names]) => first !== undefined && names.includes(first));
if (chosen) {
  await chosen[1](program);
} else if (first !== "-V" && first !== "--version") {
  // Help, a mistyped command (commander suggests the nearest), or no command: every group is needed.
  for (const [, register] of GROUPS) await register(program);
}
await program.parseAsync(process.argv);
