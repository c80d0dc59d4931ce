// `corral vm forward HOST -L SPEC...`: listens on this host and forwards every connection into the VM, one
// WebSocket per connection, until Ctrl-C. SPEC is one of Slicer's -L forms (see sdk/forward-spec.ts).
import type { Command } from "commander";
import { formatForwardTarget } from "../protocol/forward.ts";
import type { LocalForward } from "../sdk/forward.ts";
import { formatListenAddress, parseForwardSpec, type ForwardMapping } from "../sdk/forward-spec.ts";
import { addConnectionOptions, clientFor, type ConnectionFlags } from "./connection.ts";
import { action, collect } from "./output.ts";

async function runForward(hostname: string, flags: ConnectionFlags & { local?: string[] }): Promise<void> {
  const specs = flags.local ?? [];
  if (specs.length === 0) throw new Error("Say what to forward with -L, e.g. corral vm forward sbox-1 -L 8080:127.0.0.1:80");
  const mappings: ForwardMapping[] = specs.map((spec) => parseForwardSpec(spec));
  const client = clientFor(flags);
  const forwards: LocalForward[] = [];
  try {
    await client.describe(hostname); // an unknown VM fails here, not at the first connection
    for (const mapping of mappings) {
      const forward = await client.listenForward(hostname, mapping, {
        onError: (err) => process.stderr.write(`corral: ${formatListenAddress(mapping.listen)} -> ${formatForwardTarget(mapping.target)}: ${err.message}\n`),
      });
      forwards.push(forward);
      process.stdout.write(`Forwarding ${forward.address} -> ${formatForwardTarget(mapping.target)} in ${hostname}\n`);
    }
    process.stderr.write("Press Ctrl-C to stop.\n");
    await new Promise<void>((resolve) => {
      process.once("SIGINT", resolve);
      process.once("SIGTERM", resolve);
    });
  } finally {
    await Promise.all(forwards.map((forward) => forward.close()));
    await client.close();
  }
}

export function registerForwardCommand(vm: Command): void {
  addConnectionOptions(
    vm
      .command("forward")
      .description("Forward local ports (or unix sockets) to addresses inside a VM, until Ctrl-C")
      .argument("<hostname>")
      .addHelpText(
        "after",
        `
-L forms (listening on 127.0.0.1 unless an address is given; port 0 picks a free port):
  -L 3000                          127.0.0.1:3000 -> 127.0.0.1:3000 in the VM
  -L 8080:80                       127.0.0.1:8080 -> 127.0.0.1:80
  -L 8080:127.0.0.1:80             127.0.0.1:8080 -> 127.0.0.1:80
  -L 0.0.0.0:8080:127.0.0.1:80     every interface, port 8080 -> 127.0.0.1:80
  -L 9000:unix:/run/app.sock       127.0.0.1:9000 -> the VM's unix socket /run/app.sock
  -L /tmp/app.sock:/run/app.sock   a local unix socket -> the VM's unix socket`,
      ),
  )
    .requiredOption("-L, --local <spec>", "what to forward (repeatable)", collect)
    .action(action(runForward));
}
