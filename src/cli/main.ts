// The `corral` command line.
import { Command } from "commander";
import { corralVersion } from "../util/version.ts";
import { registerDaemonCommand } from "./daemon-command.ts";

const program = new Command();
program.name("corral").description("Real Linux micro-VMs on demand").version(corralVersion());
registerDaemonCommand(program);

await program.parseAsync(process.argv);
