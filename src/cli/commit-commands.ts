// `corral vm commit HOST`, `corral vm fork COMMIT`, `corral commit list|show|remove`: a VM's disk (and
// memory) saved as a commit, and new sandboxes forked from it.
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import type { CommitBody, CommitView, ForkBody } from "../sdk/index.ts";
import { addConnectionOptions, clientFor, type ConnectionFlags } from "./connection.ts";
import { networkBodyFlags } from "./network-commands.ts";
import { action, collect, formatBytes, printJson, printTable } from "./output.ts";

interface CommitFlags extends ConnectionFlags {
  memory?: boolean;
  tag?: string[];
  label?: string[];
  cacheKey?: string;
  json?: boolean;
}

interface ForkFlags extends ConnectionFlags {
  tag?: string[];
  allow?: string[];
  drop?: string[];
  sshKey?: string[];
  lifetime?: string;
  wait: string;
  timeout: string;
  json?: boolean;
}

function parseLabels(pairs: readonly string[] = []): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of pairs) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new Error(`Invalid --label ${JSON.stringify(pair)}: use NAME=VALUE`);
    labels[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return labels;
}

function describe(commit: CommitView): string {
  return `${commit.memory ? "disk and memory" : "disk only"}, ${formatBytes(commit.size_bytes)}`;
}

export function registerCommitCommands(program: Command, vm: Command): void {
  addConnectionOptions(vm.command("commit").description("Save a VM's disk (and with --memory its running state) as a commit; the VM runs on").argument("<hostname>"))
    .option("--memory", "save memory and devices too: forks resume where the VM was")
    .option("--tag <tag>", "tag the commit (repeatable)", collect)
    .option("--label <name=value>", "label the commit (repeatable)", collect)
    .option("--cache-key <key>", "a key to find the commit by (GET /vm/commits?cache_key=)")
    .option("--json", "print JSON")
    .action(
      action(async (hostname: string, flags: CommitFlags) => {
        const body: CommitBody = { memory: flags.memory ?? false, tags: flags.tag ?? [], labels: parseLabels(flags.label) };
        if (flags.cacheKey !== undefined) body.cache_key = flags.cacheKey;
        const client = clientFor(flags);
        try {
          const commit = await client.commit(hostname, body);
          if (flags.json) return printJson(commit);
          process.stdout.write(`Committed ${hostname} as ${commit.commit_id} (${describe(commit)})\n`);
        } finally {
          await client.close();
        }
      }),
    );

  addConnectionOptions(vm.command("fork").description("Create a sandbox from a commit").argument("<commit>"))
    .option("--tag <tag>", "tag the new VM (repeatable; default: the commit's tags)", collect)
    .option("--ssh-key <file>", "public key file to authorize (repeatable)", collect)
    .option("--lifetime <duration>", "delete the sandbox after this long, e.g. 10m (default: the group's lifetime, if it sets one)")
    .option(
      "--allow <entries>",
      "the fork's allowed destinations instead of the group's (bridge and isolated groups; repeatable or comma-separated; \"none\" for an empty list)",
      collect,
    )
    .option("--drop <entries>", "the fork's dropped destinations instead of the group's, as --allow", collect)
    .option("--wait <what>", "agent or none", "agent")
    .option("--timeout <duration>", "how long to wait", "5m")
    .option("--json", "print JSON")
    .action(
      action(async (commitId: string, flags: ForkFlags) => {
        if (!["agent", "none"].includes(flags.wait)) throw new Error(`Invalid --wait ${JSON.stringify(flags.wait)}: use agent or none`);
        const body: ForkBody = {};
        if (flags.tag) body.tags = flags.tag;
        if (flags.sshKey) body.ssh_keys = flags.sshKey.map((file) => readFileSync(file, "utf8").trim());
        if (flags.lifetime !== undefined) body.lifetime = flags.lifetime;
        const network = networkBodyFlags(flags);
        if (network !== undefined) body.network = network;
        const client = clientFor(flags);
        try {
          const created = await client.fork(commitId, body, flags.wait === "none" ? {} : { wait: "agent", timeout: flags.timeout });
          if (flags.json) return printJson(created);
          process.stdout.write(`${created.hostname}\n`);
        } finally {
          await client.close();
        }
      }),
    );

  const commit = program.command("commit").description("Commits: saved VMs to fork new sandboxes from");
  addConnectionOptions(commit.command("list").alias("ls").description("List commits"))
    .option("--cache-key <key>", "only commits with this cache key")
    .option("--json", "print JSON")
    .action(
      action(async (flags: CommitFlags) => {
        const client = clientFor(flags);
        try {
          const commits = await client.commits({ cacheKey: flags.cacheKey });
          if (flags.json) return printJson(commits);
          if (commits.length === 0) {
            process.stdout.write(
              `No commits${flags.cacheKey !== undefined ? ` with cache key ${JSON.stringify(flags.cacheKey)}` : ""}. Make one with: corral vm commit HOST [--memory]\n`,
            );
            return;
          }
          printTable(
            ["COMMIT", "SOURCE", "HOSTGROUP", "KIND", "SIZE", "FORKS", "CACHE KEY", "CREATED"],
            commits.map((c) => [
              c.commit_id,
              c.source_hostname,
              c.hostgroup,
              c.memory ? "memory" : "disk",
              formatBytes(c.size_bytes),
              String(c.forks.length),
              c.cache_key || "-",
              c.created_at,
            ]),
          );
        } finally {
          await client.close();
        }
      }),
    );
  addConnectionOptions(commit.command("show").description("Show one commit as JSON").argument("<commit>")).action(
    action(async (commitId: string, flags: ConnectionFlags) => {
      const client = clientFor(flags);
      try {
        printJson(await client.getCommit(commitId));
      } finally {
        await client.close();
      }
    }),
  );
  addConnectionOptions(commit.command("remove").alias("rm").description("Delete a commit (refused while VMs forked from it exist)").argument("<commit>")).action(
    action(async (commitId: string, flags: ConnectionFlags) => {
      const client = clientFor(flags);
      try {
        await client.deleteCommit(commitId);
        process.stdout.write(`Deleted ${commitId}\n`);
      } finally {
        await client.close();
      }
    }),
  );
}
