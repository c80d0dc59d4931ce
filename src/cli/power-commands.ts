// `corral vm pause|resume|shutdown|reboot|relaunch|suspend|restore|tag`: a VM's power and labels.
import type { Command } from "commander";
import type { CorralClient } from "../sdk/index.ts";
import { addConnectionOptions, clientFor, type ConnectionFlags } from "./connection.ts";
import { action, collect, printJson } from "./output.ts";

type Flags = ConnectionFlags & { json?: boolean; wait?: string; timeout?: string };

async function withClient(flags: ConnectionFlags, work: (client: CorralClient) => Promise<void>): Promise<void> {
  const client = clientFor(flags);
  try {
    await work(client);
  } finally {
    await client.close();
  }
}

function waitOption(flags: Flags): { wait?: "agent" | "userdata"; timeout?: string } {
  if (!flags.wait || flags.wait === "none") return {};
  if (flags.wait !== "agent" && flags.wait !== "userdata") throw new Error(`Invalid --wait ${JSON.stringify(flags.wait)}: use agent, userdata or none`);
  return { wait: flags.wait, timeout: flags.timeout };
}

export function registerPowerCommands(vm: Command): void {
  const simple: [string, string, (client: CorralClient, hostname: string) => Promise<string>][] = [
    ["pause", "Freeze a VM's vCPUs (exec and shells answer 409 until resumed)", (c, h) => c.pause(h)],
    ["resume", "Unfreeze a paused VM", (c, h) => c.resume(h)],
    ["shutdown", "Power a VM off (sandboxes go with their disks; persistent VMs keep theirs)", (c, h) => c.shutdown(h, "shutdown")],
    ["reboot", "Reboot a VM in place (its disk is kept)", (c, h) => c.shutdown(h, "reboot")],
    ["suspend", "Save a VM's memory to disk and stop its QEMU process", (c, h) => c.suspend(h)],
  ];
  for (const [name, description, run] of simple) {
    addConnectionOptions(vm.command(name).description(description).argument("<hostname...>")).action(
      action(async (hostnames: string[], flags: Flags) => {
        await withClient(flags, async (client) => {
          for (const hostname of hostnames) process.stdout.write(await run(client, hostname));
        });
      }),
    );
  }

  addConnectionOptions(vm.command("restore").description("Bring a suspended VM back where it was").argument("<hostname>"))
    .option("--wait <what>", "agent, userdata or none", "agent")
    .option("--timeout <duration>", "how long to wait", "5m")
    .action(
      action(async (hostname: string, flags: Flags) => {
        await withClient(flags, async (client) => {
          process.stdout.write(await client.restore(hostname, waitOption(flags)));
        });
      }),
    );

  addConnectionOptions(vm.command("relaunch").description("Boot a stopped persistent VM again on its disk").argument("<hostname>"))
    .option("--wait <what>", "agent, userdata or none", "agent")
    .option("--timeout <duration>", "how long to wait", "5m")
    .option("--json", "print JSON")
    .action(
      action(async (hostname: string, flags: Flags) => {
        await withClient(flags, async (client) => {
          const node = await client.relaunch(hostname, waitOption(flags));
          if (flags.json) printJson(node);
          else process.stdout.write(`Relaunched ${node.hostname}\n`);
        });
      }),
    );

  addConnectionOptions(vm.command("tag").description("Show a VM's tags, or change them").argument("<hostname>"))
    .option("--add <tag>", "add a tag (repeatable)", collect)
    .option("--remove <tag>", "remove a tag (repeatable)", collect)
    .option("--replace [tags...]", "replace all tags with these (none given: clear)")
    .option("--json", "print JSON")
    .action(
      action(async (hostname: string, flags: Flags & { add?: string[]; remove?: string[]; replace?: string[] | boolean }) => {
        await withClient(flags, async (client) => {
          let result = await client.tags(hostname);
          if (flags.replace !== undefined) result = await client.updateTags(hostname, { replace: Array.isArray(flags.replace) ? flags.replace : [] });
          if (flags.add) result = await client.updateTags(hostname, { add: flags.add });
          if (flags.remove) result = await client.updateTags(hostname, { remove: flags.remove });
          if (flags.json) printJson(result);
          else process.stdout.write(`${result.tags.join("\n")}${result.tags.length ? "\n" : ""}`);
        });
      }),
    );
}
