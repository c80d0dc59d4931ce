// `corral vm shell` and `corral vm forward`, added to the `vm` command group.
import type { Command } from "commander";
import { registerForwardCommand } from "./forward-command.ts";
import { registerShellCommand } from "./shell-command.ts";

export function registerShellAndForwardCommands(program: Command): void {
  const vm = program.commands.find((command) => command.name() === "vm");
  if (!vm) throw new Error('The "vm" command group must be registered first');
  registerShellCommand(vm);
  registerForwardCommand(vm);
}
