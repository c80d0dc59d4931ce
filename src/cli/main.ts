// The `corral` command line.
import { Command } from "commander";
import { corralVersion } from "../util/version.ts";
import { registerBackgroundCommands } from "./background-commands.ts";
import { registerCommitCommands } from "./commit-commands.ts";
import { registerCopyCommands } from "./cp-command.ts";
import { registerDaemonCommand } from "./daemon-command.ts";
import { registerImageCommands } from "./image-commands.ts";
import { registerSecretCommands } from "./secret-commands.ts";
import { registerShellAndForwardCommands } from "./shell-forward-commands.ts";
import { registerUpCommand } from "./up-command.ts";
import { registerPowerCommands } from "./power-commands.ts";
import { registerTemplateCommands } from "./template-commands.ts";
import { registerTopCommand } from "./top-command.ts";
import { registerVmCommands } from "./vm-commands.ts";

const program = new Command();
program.name("corral").description("Real Linux micro-VMs on demand").version(corralVersion());
registerUpCommand(program);
registerDaemonCommand(program);
const vm = registerVmCommands(program);
registerPowerCommands(vm);
registerTopCommand(vm);
registerCommitCommands(program, vm);
registerBackgroundCommands(program);
registerSecretCommands(program);
registerCopyCommands(program);
registerShellAndForwardCommands(program);
registerImageCommands(program);
registerTemplateCommands(program);

await program.parseAsync(process.argv);
