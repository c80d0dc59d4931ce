// `corral template list|rebuild`: the template snapshot each host group clones its sandboxes from.
import type { Command } from "commander";
import type { TemplateInfo } from "../sdk/index.ts";
import { addConnectionOptions, clientFor, type ConnectionFlags } from "./connection.ts";
import { action, formatBytes, printJson, printTable } from "./output.ts";

interface TemplateFlags extends ConnectionFlags {
  json?: boolean;
  wait?: boolean;
}

function describeState(t: TemplateInfo): string {
  if (t.state === "ready") return `ready (built in ${((t.build_ms ?? 0) / 1000).toFixed(1)}s)`;
  if (t.state === "failed") return `failed: ${t.error ?? "unknown error"}`;
  return t.state;
}

export function registerTemplateCommands(program: Command): void {
  const template = program.command("template").description("Template snapshots: new sandboxes are restored from them instead of booting");

  addConnectionOptions(template.command("list").alias("ls").description("Show each host group's template"))
    .option("--json", "print JSON")
    .action(
      action(async (flags: TemplateFlags) => {
        const client = clientFor(flags);
        try {
          const templates = await client.templates();
          if (flags.json) return printJson(templates);
          if (templates.length === 0) {
            process.stdout.write("No host groups, so no templates.\n");
            return;
          }
          printTable(
            ["HOSTGROUP", "STATE", "TEMPLATE", "IMAGE", "SIZE", "CLONES", "WARM", "BUILT"],
            templates.map((t) => [
              t.hostgroup,
              describeState(t),
              t.template_id ?? "-",
              t.image_version ? `${t.image}@${t.image_version}` : t.image,
              `${t.cpus} vCPU, ${formatBytes(t.ram_bytes)}`,
              String(t.clones),
              t.warm_pool > 0 ? `${t.pooled}/${t.warm_pool}` : "-",
              t.built_at ?? "-",
            ]),
          );
        } finally {
          await client.close();
        }
      }),
    );

  addConnectionOptions(template.command("rebuild").description("Build a fresh template for a host group (clones of the old one keep running)").argument("<hostgroup>"))
    .option("--wait", "wait until the new template is ready")
    .option("--json", "print JSON")
    .action(
      action(async (hostgroup: string, flags: TemplateFlags) => {
        const client = clientFor(flags);
        try {
          let info = await client.rebuildTemplate(hostgroup);
          while (flags.wait && info.state === "building") {
            await new Promise((resolve) => setTimeout(resolve, 500));
            info = (await client.templates()).find((t) => t.hostgroup === hostgroup) ?? info;
          }
          if (flags.json) return printJson(info);
          process.stdout.write(
            flags.wait
              ? `Template of ${hostgroup}: ${describeState(info)}${info.template_id ? ` (${info.template_id})` : ""}\n`
              : `Rebuilding the template of ${hostgroup} in the background (see: corral template list)\n`,
          );
          if (flags.wait && info.state !== "ready") process.exitCode = 1;
        } finally {
          await client.close();
        }
      }),
    );
}
