// The `corral` command line. Each command group's module is loaded only when that group is run (all of them
// for `corral --help`; see command-groups.ts), so that a command pays for its own imports only.
import { Command } from "commander";
import { corralVersion } from "../util/version.ts";
import { registerCommandsFor } from "./command-groups.ts";

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
await registerCommandsFor(program, process.argv.slice(2));
await program.parseAsync(process.argv);
