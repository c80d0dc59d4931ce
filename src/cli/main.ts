// The `corral` command line.
import { Command } from "commander";
import { corralVersion } from "../util/version.ts";
import { registerBackgroundCommands } from "./background-commands.ts";
import { registerCommitCommands } from "./commit-commands.ts";
import { registerControllerCommand } from "./controller-command.ts";
import { registerCopyCommands } from "./cp-command.ts";
import { registerDaemonCommand } from "./daemon-command.ts";
import { registerEnvCommands } from "./env-commands.ts";
import { registerHostCommands } from "./host-commands.ts";
import { registerImageCommands } from "./image-commands.ts";
import { registerSecretCommands } from "./secret-commands.ts";
import { registerServiceCommands } from "./service-command.ts";
import { registerShellAndForwardCommands } from "./shell-forward-commands.ts";
import { registerStatusCommand } from "./status-command.ts";
import { registerUpCommand } from "./up-command.ts";
import { registerPowerCommands } from "./power-commands.ts";
import { registerTemplateCommands } from "./template-commands.ts";
import { registerTopCommand } from "./top-command.ts";
import { registerVmCommands } from "./vm-commands.ts";

// A reader that goes away (`corral vm exec X -- cat big | head`) ends the command quietly with the status a
// shell gives a program killed by SIGPIPE (128 + 13), as it would end a C tool, instead of a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(141);
    throw err;
  });
}

const program = new Command();
program.name("corral").description("Real Linux micro-VMs on demand").version(corralVersion());
registerUpCommand(program);
registerDaemonCommand(program);
registerControllerCommand(program);
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
registerHostCommands(program);
registerEnvCommands(program);
registerStatusCommand(program);
registerServiceCommands(program);

await program.parseAsync(process.argv);
