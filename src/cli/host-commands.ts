// `corral host add|list|show|remove`: the hosts of a fleet controller (Corral daemons and TTstack agents, which take
// environments, and libvirt daemons by their URI).
import type { Command } from "commander";
import type { Host, HostVm, RegisterHost } from "../sdk/index.ts";
import { addFleetOptions, withController, type FleetFlags } from "./fleet-connection.ts";
import { action, formatBytes, printJson, printTable } from "./output.ts";
import { resolveSecret, warnOnStderr } from "./secret-options.ts";
import { amountWithPercent, formatAmount, formatMib, type Resource } from "./status-command.ts";

interface JsonFlag {
  json?: boolean;
}

/**
 * The body for POST /api/hosts: a URI (`http://…`, `https://…`, or a libvirt URI such as `qemu:///system` or
 * `qemu+ssh://root@HOST/system`, which the controller checks) is Virtumancer's `uri`, anything else TTstack's
 * `addr` (HOST:PORT, checked here so that a missing port is caught before the controller tries to reach it).
 */
export function registerBody(target: string, options: { id?: string; token?: string } = {}): RegisterHost {
  const body: RegisterHost = /^[a-z][a-z0-9+.-]*:\/\//i.test(target) ? { uri: target } : { addr: target };
  if (body.addr !== undefined && !/^(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):\d{1,5}$/.test(target)) {
    throw new Error(`Invalid host address ${JSON.stringify(target)}: use HOST:PORT (e.g. 10.0.0.2:8080) or http://HOST:PORT`);
  }
  if (options.id !== undefined) body.id = options.id;
  if (options.token !== undefined) body.token = options.token;
  return body;
}

/** A span of time, coarse as people say it: "45s", "12m", "5h 59m", "2d 3h". */
export function formatSpan(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

/** How long ago a time was: RFC 3339, or Unix seconds (TTstack's timestamps). */
export function formatSince(when: string | number | null, now: number): string {
  if (when === null) return "never";
  const ms = typeof when === "number" ? when * 1000 : Date.parse(when);
  return `${formatSpan((now - ms) / 1000)} ago`;
}

const HOST_KIND_NAMES: Record<Host["kind"], string> = { corral: "Corral daemon", ttstack: "TTstack agent", libvirt: "libvirt daemon" };

export const HOST_HEADERS = ["ID", "STATE", "ADDR", "CPU RES/TOTAL", "MEM RES/TOTAL", "DISK RES/TOTAL", "VMS", "LAST SEEN"] as const;

export function hostRows(hosts: readonly Host[], now: number): string[][] {
  return hosts.map((host) => [
    host.id,
    host.state,
    // A libvirt host's `addr` is only its machine: its URI says how it is reached.
    host.kind === "libvirt" ? host.uri : host.addr,
    `${host.reserved.cpu}/${host.resource.cpu_total}`,
    `${formatMib(host.reserved.mem)}/${formatMib(host.resource.mem_total)}`,
    `${formatMib(host.reserved.disk)}/${formatMib(host.resource.disk_total)}`,
    String(host.vm_count),
    formatSince(host.last_seen_at, now),
  ]);
}

function usageLine(host: Host, resource: Resource): string {
  const total = host.resource[`${resource}_total` as const];
  const reserved = amountWithPercent(resource, host.reserved[resource], total);
  const used = amountWithPercent(resource, host.resource[`${resource}_used` as const], total);
  return `${reserved} reserved, ${used} used, of ${formatAmount(resource, total)}${resource === "cpu" ? " vCPUs" : ""}`;
}

const list = (items: readonly string[]): string => (items.length > 0 ? items.join(", ") : "none");

export function hostDetails(host: Host, now: number): string[] {
  const lines = [
    `Host ${host.id}: ${host.state}`,
    `  Address:    ${host.addr} (${host.uri})`,
    `  Hostname:   ${host.hostname || "-"}`,
    `  CPU:        ${usageLine(host, "cpu")}`,
    `  Memory:     ${usageLine(host, "mem")}`,
    `  Disk:       ${usageLine(host, "disk")}`,
    `  Engines:    ${list(host.engines)}`,
    `  Storage:    ${host.storage || "-"}`,
    `  Images:     ${list(host.images)}`,
    `  Registered: ${new Date(host.registered_at * 1000).toISOString()}`,
    `  Kind:       ${HOST_KIND_NAMES[host.kind]}`,
    `  Last seen:  ${formatSince(host.last_seen_at, now)}`,
  ];
  if (host.last_error !== null) lines.push(`  Last error: ${host.last_error}`);
  return lines;
}

export const HOST_VM_HEADERS = ["NAME", "STATUS", "VCPUS", "MEMORY", "ENV"] as const;

export function hostVmRows(vms: readonly HostVm[]): string[][] {
  return vms.map((vm) => [vm.name, vm.status, String(vm.vcpu_count), formatBytes(vm.memory_bytes), vm.env_id ?? "-"]);
}

function addedLine(host: Host): string {
  const size = `${host.resource.cpu_total} vCPUs, ${formatMib(host.resource.mem_total)} memory, ${formatMib(host.resource.disk_total)} disk`;
  const problem = host.last_error !== null ? `; last error: ${host.last_error}` : "";
  return `Added host ${host.id} (${host.state}) at ${host.addr}: ${size}, images: ${list(host.images)}${problem}`;
}

export function registerHostCommands(program: Command): Command {
  const host = program.command("host").description("Add, list, inspect and remove the daemons of a fleet controller");

  addFleetOptions(
    host
      .command("add")
      .description("Register a daemon (Corral, TTstack agent, or libvirt by its URI) with the controller")
      .argument("<addr-or-uri>", "HOST:PORT, http://HOST:PORT, or a libvirt URI (qemu:///system, qemu+ssh://USER@HOST/system)"),
  )
    .option("--id <id>", "the host's id (default: the id the daemon reports)")
    .option("--token <token>", "the daemon's API token, if it runs with one (ps shows it: prefer --token-file)")
    .option("--token-file <file>", "read the daemon's token from FILE (mode 0600), e.g. the daemon's STATE_DIR/auth/token")
    .option("--json", "print JSON")
    .action(
      action(async (target: string, flags: FleetFlags & JsonFlag & { id?: string; token?: string; tokenFile?: string }) => {
        const token = resolveSecret({ value: flags.token, file: flags.tokenFile, flag: "--token", fileFlag: "--token-file" }, warnOnStderr);
        const body = registerBody(target, { id: flags.id, token });
        const added = await withController(flags, (client) => client.hosts.add(body));
        if (flags.json) return printJson(added);
        process.stdout.write(`${addedLine(added)}\n`);
      }),
    );

  addFleetOptions(host.command("list").alias("ls").description("List hosts with what the controller reserves on each"))
    .option("--json", "print JSON")
    .action(
      action(async (flags: FleetFlags & JsonFlag) => {
        const hosts = await withController(flags, (client) => client.hosts.list());
        if (flags.json) return printJson(hosts);
        if (hosts.length === 0) {
          process.stdout.write("No hosts. Add one: corral host add HOST:PORT (a daemon's address)\n");
          return;
        }
        printTable(HOST_HEADERS, hostRows(hosts, Date.now()));
      }),
    );

  addFleetOptions(host.command("show").description("Show a host and its VMs").argument("<id>"))
    .option("--json", "print JSON")
    .action(
      action(async (id: string, flags: FleetFlags & JsonFlag) => {
        // An offline host still has its record; only its VM list needs the daemon, so that may fail alone.
        const [found, vms] = await withController(flags, async (client) => {
          const record = await client.hosts.get(id);
          return [record, await client.hosts.vms(id).catch((err: unknown) => err as Error)] as const;
        });
        if (vms instanceof Error) process.stderr.write(`corral: cannot list the VMs of host ${id}: ${vms.message}\n`);
        if (flags.json) return printJson({ ...found, vms: vms instanceof Error ? null : vms });
        process.stdout.write(`${hostDetails(found, Date.now()).join("\n")}\n\n`);
        if (vms instanceof Error) return;
        if (vms.length === 0) process.stdout.write("No VMs on this host.\n");
        else printTable(HOST_VM_HEADERS, hostVmRows(vms));
      }),
    );

  addFleetOptions(host.command("remove").alias("rm").description("Remove a host from the controller (it must hold no environment's VMs)").argument("<id>")).action(
    action(async (id: string, flags: FleetFlags) => {
      await withController(flags, (client) => client.hosts.remove(id));
      process.stdout.write(`Removed host ${id}\n`);
    }),
  );
  return host;
}
