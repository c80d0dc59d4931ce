// The `corral` command line's groups and where each is defined, so that a command loads only the modules it
// needs (src/cli/main.ts): `corral --version` loads none, `corral vm list` vm-commands.ts alone, `corral --help`
// every one. A command missing from these tables still works (everything is loaded then), only slower.
import type { Command } from "commander";

/**
 * What other modules add to the `vm` group, by the subcommands they add: `corral vm list` loads none of them,
 * `corral vm cp` only the copy commands. A subcommand missing here still works: every part is loaded then.
 */
export const VM_PARTS: [subcommands: readonly string[], register: (program: Command, vm: Command) => Promise<void>][] = [
  [["pause", "resume", "shutdown", "reboot", "suspend", "restore", "relaunch", "tag"], async (_, vm) => (await import("./power-commands.ts")).registerPowerCommands(vm)],
  [["top"], async (_, vm) => (await import("./top-command.ts")).registerTopCommand(vm)],
  [["commit", "fork"], async (program, vm) => (await import("./commit-commands.ts")).registerCommitCommands(program, vm)],
  [["bg"], async (program) => (await import("./background-commands.ts")).registerBackgroundCommands(program)],
  [["cp", "files"], async (program) => (await import("./cp-command.ts")).registerCopyCommands(program)],
  [["shell", "forward"], async (program) => (await import("./shell-forward-commands.ts")).registerShellAndForwardCommands(program)],
];
/** Subcommands of `vm` that vm-commands.ts itself defines. */
export const VM_OWN = ["list", "ls", "add", "create", "show", "lifetime", "exec", "logs", "health", "delete", "rm", "network"];

/** `corral vm …` and `corral commit …`: the vm group, with the parts the subcommand needs (all for help). */
async function registerVmGroup(program: Command, argv: readonly string[]): Promise<void> {
  const vm = (await import("./vm-commands.ts")).registerVmCommands(program);
  const [group, subcommand] = argv;
  if (group === "vm" && subcommand !== undefined && VM_OWN.includes(subcommand)) return;
  const part = group === "vm" ? VM_PARTS.find(([names]) => names.includes(subcommand ?? "")) : undefined;
  // `corral commit …` is the commit part's own group.
  const needed = group === "commit" ? VM_PARTS.filter(([names]) => names.includes("commit")) : part ? [part] : VM_PARTS;
  for (const [, register] of needed) await register(program, vm);
}

/** Top-level command names and how to register them, in the order `corral --help` lists them. */
export const GROUPS: [names: readonly string[], register: (program: Command, argv: readonly string[]) => Promise<unknown>][] = [
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

/** Registers what `argv` (the arguments after `corral`) needs. */
export async function registerCommandsFor(program: Command, argv: readonly string[]): Promise<void> {
  const first = argv[0];
  const chosen = GROUPS.find(([names]) => first !== undefined && names.includes(first));
  if (chosen) return void (await chosen[1](program, argv));
  if (first === "-V" || first === "--version") return;
  // Help, a mistyped command (commander suggests the nearest), or no command: every group is needed.
  for (const [, register] of GROUPS) await register(program, argv);
}
