// `corral vm list|add|show|lifetime|network|exec|logs|health|delete`: VMs on one daemon, through the SDK.
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import type { CreateNodeBody, DescribedNode } from "../sdk/index.ts";
import { addConnectionOptions, clientFor, type ConnectionFlags } from "./connection.ts";
import { networkBodyFlags, networkRows, printRows, registerVmNetworkCommand } from "./network-commands.ts";
import { action, collect, formatBytes, parseSize, printJson, printTable } from "./output.ts";

interface JsonFlag {
  json?: boolean;
}

/** A span of time, coarsely: "45s", "12m", "5h", "3d". */
function span(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172_800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86_400)}d`;
}

function age(iso: string): string {
  return span(Date.now() - Date.parse(iso));
}

/** When a VM expires, for people: "in 9m", "-" when it has no lifetime. */
function expiry(iso: string | undefined): string {
  return iso === undefined ? "-" : `in ${span(Date.parse(iso) - Date.now())}`;
}

function printNode(node: DescribedNode): void {
  const rows: [string, string][] = [
    ["hostname", node.hostname],
    ["group", node.hostgroup],
    ["status", `${node.status} (${node.state})`],
    [
      "health",
      node.health === undefined ? "-" : `${node.health}${node.health_detail ? `: ${node.health_detail}` : ""}${node.health_since ? ` (since ${age(node.health_since)} ago)` : ""}`,
    ],
    ["image", node.image],
    ["cpus", String(node.cpus)],
    ["ram", formatBytes(node.ram_bytes)],
    ["ip", node.ip],
    ["persistent", String(node.persistent)],
    ["created", `${node.created_at} (${age(node.created_at)} ago)`],
    ["expires", node.expires_at === undefined ? "never" : `${node.expires_at} (${expiry(node.expires_at)})`],
    ["tags", node.tags.join(",") || "-"],
    ...(node.network ? networkRows(node.network) : []),
  ];
  printRows(rows);
}

/** The host group of a VM, looked up when the user did not say. */
async function groupOf(flags: ConnectionFlags, hostname: string): Promise<string> {
  const client = clientFor(flags);
  try {
    return (await client.describe(hostname)).hostgroup;
  } finally {
    await client.close();
  }
}

export function registerVmCommands(program: Command): Command {
  const vm = program.command("vm").description("Create, inspect, use and delete VMs on a daemon");

  addConnectionOptions(vm.command("list").alias("ls").description("List VMs"))
    .option("-g, --group <name>", "only this host group")
    .option("--tag <tag>", "only VMs with this tag")
    .option("--json", "print JSON")
    .action(
      action(async (flags: ConnectionFlags & JsonFlag & { group?: string; tag?: string }) => {
        const client = clientFor(flags);
        try {
          const nodes = flags.group ? await client.groupNodes(flags.group, { tag: flags.tag }) : await client.nodes({ tag: flags.tag });
          if (flags.json) return printJson(nodes);
          if (nodes.length === 0) {
            process.stdout.write("No VMs. Create one with: corral vm add\n");
            return;
          }
          printTable(
            ["HOSTNAME", "GROUP", "STATUS", "HEALTH", "CPUS", "RAM", "IP", "AGE", "EXPIRES", "TAGS"],
            nodes.map((n) => [
              n.hostname,
              n.hostgroup,
              n.status,
              n.health ?? "-",
              String(n.cpus),
              formatBytes(n.ram_bytes),
              n.ip,
              age(n.created_at),
              expiry(n.expires_at),
              n.tags.join(","),
            ]),
          );
        } finally {
          await client.close();
        }
      }),
    );

  addConnectionOptions(vm.command("add").alias("create").description("Create a sandbox VM and wait for its agent").argument("[group]", "host group", "sbox"))
    .option("--cpus <n>", "vCPUs (default: the group's)")
    .option("--ram <size>", "memory, e.g. 512M or 2G (default: the group's)")
    .option("--userdata <script>", "script run once at first boot")
    .option("--userdata-file <file>", "read the userdata script from a file")
    .option("--ssh-key <file>", "public key file to authorize (repeatable)", collect)
    .option("--tag <tag>", "tag the VM (repeatable)", collect)
    .option("--persistent", "keep the disk when the VM stops")
    .option("--lifetime <duration>", "delete the sandbox after this long, e.g. 10m or 2h (default: the group's lifetime, if it sets one)")
    .option("--ip <address>", "a static address from the group's pool (bridge groups)")
    .option(
      "--allow <entries>",
      "this VM's allowed destinations instead of the group's (bridge and isolated groups; repeatable or comma-separated; \"none\" for an empty list)",
      collect,
    )
    .option("--drop <entries>", "this VM's dropped destinations instead of the group's, as --allow", collect)
    .option("--wait <what>", "agent, userdata or none", "agent")
    .option("--timeout <duration>", "how long to wait", "5m")
    .option("--json", "print JSON")
    .action(
      action(async (group: string, flags: ConnectionFlags & JsonFlag & Record<string, string | string[] | boolean | undefined>) => {
        const body: CreateNodeBody = {};
        if (flags.cpus !== undefined) body.cpus = Number(flags.cpus);
        if (flags.ram !== undefined) body.ram_bytes = parseSize(String(flags.ram));
        if (flags.userdata !== undefined && flags.userdataFile !== undefined) throw new Error("Give --userdata or --userdata-file, not both");
        if (flags.userdata !== undefined) body.userdata = String(flags.userdata);
        if (flags.userdataFile !== undefined) body.userdata = readFileSync(String(flags.userdataFile), "utf8");
        if (Array.isArray(flags.sshKey)) body.ssh_keys = flags.sshKey.map((file) => readFileSync(file, "utf8").trim());
        if (Array.isArray(flags.tag)) body.tags = flags.tag;
        if (flags.persistent) body.persistent = true;
        if (flags.lifetime !== undefined) body.lifetime = String(flags.lifetime);
        if (flags.ip !== undefined) body.ip = String(flags.ip);
        const network = networkBodyFlags({ allow: flags.allow as string[] | undefined, drop: flags.drop as string[] | undefined });
        if (network !== undefined) body.network = network;
        const wait = String(flags.wait);
        if (!["agent", "userdata", "none"].includes(wait)) throw new Error(`Invalid --wait ${JSON.stringify(wait)}: use agent, userdata or none`);
        const client = clientFor(flags);
        try {
          const started = performance.now();
          const created = await client.createNode(group, body, wait === "none" ? {} : { wait: wait as "agent" | "userdata", timeout: String(flags.timeout) });
          if (flags.json) return printJson(created);
          const seconds = ((performance.now() - started) / 1000).toFixed(1);
          process.stdout.write(`${created.hostname}\n`);
          const expires = created.expires_at === undefined ? "" : `, expires ${expiry(created.expires_at)}`;
          process.stderr.write(`Created ${created.hostname} in ${seconds}s${wait === "none" ? " (booting)" : ""}${expires}. Try: corral vm exec ${created.hostname} -- uname -a\n`);
        } finally {
          await client.close();
        }
      }),
    );

  addConnectionOptions(vm.command("show").description("Show one VM: its state, size, image and when it expires").argument("<hostname>"))
    .option("--json", "print JSON")
    .action(
      action(async (hostname: string, flags: ConnectionFlags & JsonFlag) => {
        const client = clientFor(flags);
        try {
          const node = await client.describe(hostname);
          if (flags.json) return printJson(node);
          printNode(node);
        } finally {
          await client.close();
        }
      }),
    );

  addConnectionOptions(
    vm
      .command("lifetime")
      .description('Set when a sandbox expires: LIFETIME from now (longer or shorter than before), or never with "none"')
      .argument("<hostname>")
      .argument("<lifetime>", 'a duration such as 30m or 2h, or "none"'),
  )
    .option("--json", "print JSON")
    .action(
      action(async (hostname: string, lifetime: string, flags: ConnectionFlags & JsonFlag) => {
        const client = clientFor(flags);
        try {
          const node = await client.setLifetime(hostname, lifetime === "none" ? null : lifetime);
          if (flags.json) return printJson(node);
          process.stdout.write(node.expires_at === undefined ? `${hostname} never expires\n` : `${hostname} expires at ${node.expires_at} (${expiry(node.expires_at)})\n`);
        } finally {
          await client.close();
        }
      }),
    );

  addConnectionOptions(
    vm
      .command("exec")
      .description("Run a command in a VM; its output streams back and its exit code becomes ours")
      .argument("<hostname>")
      .argument("<command...>", "the command and its arguments (put them after --)"),
  )
    .option("--uid <uid>", "run as this user id")
    .option("--gid <gid>", "run with this group id")
    .option("-u, --user <name>", "run as this user of the guest (e.g. the image's default user)")
    .option("--cwd <dir>", "working directory in the guest")
    .option("-e, --env <KEY=VALUE>", "environment variable (repeatable)", collect)
    .option("--shell <shell>", "run the command line through this shell (e.g. /bin/sh)")
    .option("-i, --stdin", "send this terminal's standard input to the command")
    .action(
      action(async (hostname: string, command: string[], flags: ConnectionFlags & Record<string, string | string[] | boolean | undefined>) => {
        const [cmd, ...args] = command;
        if (!cmd) throw new Error("Name a command to run, e.g. corral vm exec sbox-1 -- uname -a");
        const client = clientFor(flags);
        let exitCode = 0;
        try {
          for await (const frame of client.exec(hostname, {
            cmd,
            args,
            env: Array.isArray(flags.env) ? flags.env : [],
            cwd: flags.cwd as string | undefined,
            uid: flags.uid !== undefined ? Number(flags.uid) : undefined,
            gid: flags.gid !== undefined ? Number(flags.gid) : undefined,
            user: flags.user as string | undefined,
            shell: flags.shell as string | undefined,
            stdio: "base64",
            stdin: flags.stdin ? process.stdin : undefined,
          })) {
            if (frame.type === "stdout" && frame.stdout) process.stdout.write(Buffer.from(frame.stdout, "base64"));
            else if (frame.type === "stderr" && frame.stderr) process.stderr.write(Buffer.from(frame.stderr, "base64"));
            else if (frame.type === "exit") {
              exitCode = frame.exit_code;
              if (frame.error) process.stderr.write(`corral: ${frame.error}\n`);
            }
          }
        } finally {
          await client.close();
        }
        process.exitCode = exitCode;
      }),
    );

  addConnectionOptions(vm.command("logs").description("Show the end of a VM's serial console").argument("<hostname>"))
    .option("-n, --lines <n>", "lines to show (0 for all)", "20")
    .option("--json", "print JSON")
    .action(
      action(async (hostname: string, flags: ConnectionFlags & JsonFlag & { lines: string }) => {
        const client = clientFor(flags);
        try {
          const logs = await client.logs(hostname, Number(flags.lines));
          if (flags.json) return printJson(logs);
          process.stdout.write(logs.content.endsWith("\n") || logs.content === "" ? logs.content : `${logs.content}\n`);
        } finally {
          await client.close();
        }
      }),
    );

  addConnectionOptions(vm.command("health").description("Ask a VM's agent how it is").argument("<hostname>"))
    .option("--json", "print JSON")
    .action(
      action(async (hostname: string, flags: ConnectionFlags & JsonFlag) => {
        const client = clientFor(flags);
        try {
          const health = await client.health(hostname);
          if (flags.json) return printJson(health);
          const userdata = health.userdata_ran ? `ran${health.userdata_exit_code !== undefined ? ` (exit ${health.userdata_exit_code})` : ""}` : "running";
          process.stdout.write(
            `${health.hostname}: agent ${health.agent_version} up ${(health.agent_uptime / 1e9).toFixed(1)}s, system up ${(health.system_uptime / 1e9).toFixed(1)}s, userdata ${userdata}\n`,
          );
        } finally {
          await client.close();
        }
      }),
    );

  addConnectionOptions(vm.command("delete").alias("rm").description("Delete VMs and their disks").argument("<hostname...>"))
    .option("-g, --group <name>", "their host group (looked up when not given)")
    .option("--json", "print JSON")
    .action(
      action(async (hostnames: string[], flags: ConnectionFlags & JsonFlag & { group?: string }) => {
        const client = clientFor(flags);
        try {
          const results = [];
          for (const hostname of hostnames) {
            const group = flags.group ?? (await groupOf(flags, hostname));
            results.push({ hostname, ...(await client.deleteNode(group, hostname)) });
            if (!flags.json) process.stdout.write(`Deleted ${hostname}\n`);
          }
          if (flags.json) printJson(results);
        } finally {
          await client.close();
        }
      }),
    );
  registerVmNetworkCommand(vm);
  return vm;
}
