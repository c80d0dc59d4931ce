// `corral secret create|list|update|remove`: secrets the daemon delivers into every VM as
// /run/corral/secrets/NAME. Values are read from a file or the command line and never printed.
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import type { SecretFields } from "../sdk/secrets.ts";
import { parseWholeNumber } from "./background-commands.ts";
import { addConnectionOptions, clientFor, type ConnectionFlags } from "./connection.ts";
import { action, formatBytes, printJson, printTable } from "./output.ts";

interface SecretFlags extends ConnectionFlags {
  fromFile?: string;
  fromLiteral?: string;
  mode?: string;
  uid?: string;
  gid?: string;
  json?: boolean;
}

function withValueOptions(command: Command): Command {
  return command
    .option("--from-file <file>", "the secret is this file's content")
    .option("--from-literal <value>", "the secret is this text")
    .option("--mode <mode>", 'file mode in the guest, e.g. "0600" or "0644"')
    .option("--uid <uid>", "owner in the guest")
    .option("--gid <gid>", "group in the guest")
    .option("--json", "print JSON");
}

function fieldsFrom(flags: SecretFlags): SecretFields {
  if (flags.fromFile !== undefined && flags.fromLiteral !== undefined) throw new Error("Give --from-file or --from-literal, not both");
  const fields: SecretFields = {};
  if (flags.fromFile !== undefined) fields.data = readFileSync(flags.fromFile);
  if (flags.fromLiteral !== undefined) fields.data = flags.fromLiteral;
  if (flags.mode !== undefined) fields.permissions = flags.mode;
  if (flags.uid !== undefined) fields.uid = parseWholeNumber(flags.uid, "--uid");
  if (flags.gid !== undefined) fields.gid = parseWholeNumber(flags.gid, "--gid");
  return fields;
}

export function registerSecretCommands(program: Command): void {
  const secret = program.command("secret").description("Secrets delivered into every VM under /run/corral/secrets");

  addConnectionOptions(withValueOptions(secret.command("create").description("Create a secret").argument("<name>"))).action(
    action(async (name: string, flags: SecretFlags) => {
      const fields = fieldsFrom(flags);
      if (fields.data === undefined) throw new Error("Give the value with --from-file FILE or --from-literal TEXT");
      const client = clientFor(flags);
      try {
        const created = await client.secrets.create(name, { ...fields, data: fields.data });
        if (flags.json) return printJson(created);
        process.stdout.write(`Created secret ${created.name} (${created.size} bytes, ${created.permissions}, uid ${created.uid}, gid ${created.gid})\n`);
      } finally {
        await client.close();
      }
    }),
  );

  addConnectionOptions(secret.command("list").alias("ls").description("List secrets (never their values)"))
    .option("--json", "print JSON")
    .action(
      action(async (flags: SecretFlags) => {
        const client = clientFor(flags);
        try {
          const secrets = await client.secrets.list();
          if (flags.json) return printJson(secrets);
          if (secrets.length === 0) {
            process.stdout.write("No secrets. Create one with: corral secret create NAME --from-file FILE\n");
            return;
          }
          printTable(
            ["NAME", "SIZE", "MODE", "UID", "GID", "MODIFIED"],
            secrets.map((s) => [s.name, formatBytes(s.size), s.permissions, String(s.uid), String(s.gid), s.modified_at]),
          );
        } finally {
          await client.close();
        }
      }),
    );

  addConnectionOptions(withValueOptions(secret.command("update").description("Change a secret's value, mode or owner").argument("<name>"))).action(
    action(async (name: string, flags: SecretFlags) => {
      const fields = fieldsFrom(flags);
      if (Object.keys(fields).length === 0) throw new Error("Nothing to change: give --from-file, --from-literal, --mode, --uid or --gid");
      const client = clientFor(flags);
      try {
        const updated = await client.secrets.update(name, fields);
        if (flags.json) return printJson(updated);
        process.stdout.write(`Updated secret ${updated.name} (${updated.size} bytes, ${updated.permissions}, uid ${updated.uid}, gid ${updated.gid})\n`);
      } finally {
        await client.close();
      }
    }),
  );

  addConnectionOptions(secret.command("remove").alias("rm").description("Remove secrets (from the daemon and from every VM)").argument("<name...>"))
    .option("--json", "print JSON")
    .action(
      action(async (names: string[], flags: SecretFlags) => {
        const client = clientFor(flags);
        try {
          const results = [];
          for (const name of names) {
            results.push(await client.secrets.remove(name));
            if (!flags.json) process.stdout.write(`Removed secret ${name}\n`);
          }
          if (flags.json) printJson(results);
        } finally {
          await client.close();
        }
      }),
    );
}
