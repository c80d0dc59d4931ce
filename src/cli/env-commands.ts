// `corral env create|list|show|delete|stop|start`: environments, each a set of VMs the controller places
// on its hosts, reachable over SSH through their hosts' mapped ports.
import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import type { Command } from "commander";
import { MAX_LIFETIME_SECONDS, VM_BOUNDS } from "../protocol/controller.ts";
import { isImageName } from "../protocol/names.ts";
import { hostPort, sshCommand } from "../protocol/vm-access.ts";
import type { CreateEnv, Env, EnvDetail, FleetVm, VmSpec } from "../sdk/index.ts";
import { addFleetOptions, withController, type FleetFlags } from "./fleet-connection.ts";
import { formatSince, formatSpan } from "./host-commands.ts";
import { action, collect, printJson, printTable } from "./output.ts";
import { formatMib } from "./status-command.ts";

interface JsonFlag {
  json?: boolean;
}

interface CreateFlags extends FleetFlags, JsonFlag {
  vm?: string[];
  sshKey?: string[];
  owner?: string;
  lifetime?: string;
}

const VM_FIELDS = ["image", "engine", "cpu", "mem", "disk", "ports", "deny_outgoing"] as const;
type VmField = (typeof VM_FIELDS)[number];

// The bounds are the API's own, read from its schema so that the two never disagree.
const BOUNDS = VM_BOUNDS;

function wholeNumber(field: string, value: string, min: number, max: number): number {
  if (!/^\d+$/.test(value)) throw new Error(`${field} must be a whole number`);
  const n = Number(value);
  if (n < min || n > max) throw new Error(`${field} must be from ${min} to ${max}, got ${n}`);
  return n;
}

const MIB_PER_UNIT: Record<string, number> = { "": 1, m: 1, g: 1024, t: 1024 * 1024 };

/** MiB as a bare number ("1024"), or a size ("2G", "512M", "1.5GiB"). */
function mebibytes(field: string, value: string, min: number, max: number): number {
  const match = /^(\d+(?:\.\d+)?)([mgt]?)(?:i?b)?$/i.exec(value);
  const mib = match ? Number(match[1]) * (MIB_PER_UNIT[(match[2] ?? "").toLowerCase()] ?? 1) : Number.NaN;
  if (!Number.isInteger(mib)) throw new Error(`${field} must be a whole number of MiB, or a size such as 2G`);
  if (mib < min || mib > max) throw new Error(`${field} must be from ${min} to ${max} MiB, got ${mib}`);
  return mib;
}

function guestPorts(value: string): number[] {
  const ports = value.split(/[+;]/).map((port) => wholeNumber("each port", port.trim(), 1, 65535));
  const twice = ports.find((port, i) => ports.indexOf(port) !== i);
  if (twice !== undefined) throw new Error(`ports lists ${twice} twice`);
  return ports;
}

function flag(field: string, value: string | undefined): boolean {
  if (value === undefined || value === "true") return true;
  if (value === "false") return false;
  throw new Error(`${field} must be true or false, got ${JSON.stringify(value)}`);
}

function setField(spec: Partial<VmSpec>, field: VmField, value: string | undefined): void {
  if (field === "deny_outgoing") {
    spec.deny_outgoing = flag(field, value);
    return;
  }
  if (value === undefined || value === "") throw new Error(`${field} needs a value (${field}=…)`);
  if (field === "image") {
    if (!isImageName(value)) throw new Error(`image ${JSON.stringify(value)} is not an image name (lower-case letters, digits, ".", "_" and "-")`);
    spec.image = value;
  } else if (field === "engine") spec.engine = value;
  else if (field === "cpu") spec.cpu = wholeNumber(field, value, BOUNDS.cpu.minimum ?? 1, BOUNDS.cpu.maximum ?? 64);
  else if (field === "mem") spec.mem = mebibytes(field, value, BOUNDS.mem.minimum ?? 0, BOUNDS.mem.maximum ?? Infinity);
  else if (field === "disk") spec.disk = mebibytes(field, value, BOUNDS.disk.minimum ?? 0, BOUNDS.disk.maximum ?? Infinity);
  else spec.ports = guestPorts(value);
}

/**
 * One `--vm` spec: `image=base,cpu=2,mem=1024,disk=40960,ports=80+443,engine=qemu,deny_outgoing`. Fields are
 * separated by commas, ports by "+" or ";"; mem and disk are MiB or sizes ("2G"); `image` is required, the
 * rest default on the controller (TTstack's defaults). Errors quote the spec and name the field.
 */
export function parseVmSpec(text: string): VmSpec {
  const spec: Partial<VmSpec> = {};
  const seen = new Set<string>();
  try {
    for (const item of text.split(",")) {
      const part = item.trim();
      if (part === "") continue;
      const at = part.indexOf("=");
      const name = (at < 0 ? part : part.slice(0, at)).trim();
      const value = at < 0 ? undefined : part.slice(at + 1).trim();
      const known = (VM_FIELDS as readonly string[]).includes(name);
      if (!known && at < 0) {
        const strayPort = /^\d+$/.test(name) && seen.has("ports");
        throw new Error(strayPort ? `separate ports with "+" or ";" (commas separate fields), got ${JSON.stringify(part)}` : `expected NAME=VALUE, got ${JSON.stringify(part)}`);
      }
      if (!known) throw new Error(`unknown field ${JSON.stringify(name)} (fields: ${VM_FIELDS.join(", ")})`);
      if (seen.has(name)) throw new Error(`${name} is given twice`);
      seen.add(name);
      setField(spec, name as VmField, value);
    }
    if (spec.image === undefined) throw new Error("image is required, e.g. image=base");
  } catch (err) {
    throw new Error(`--vm ${JSON.stringify(text)}: ${(err as Error).message}`);
  }
  return spec as VmSpec;
}

const LIFETIME_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `--lifetime`: seconds ("3600") or a duration ("6h", "90m", "1d12h", "1.5h"), in whole seconds. */
export function parseLifetime(text: string): number {
  const value = text.trim();
  let seconds: number | undefined;
  if (/^\d+$/.test(value)) seconds = Number(value);
  else if (/^(\d+(\.\d+)?[dhms])+$/.test(value)) {
    seconds = 0;
    for (const [, amount, unit] of value.matchAll(/(\d+(?:\.\d+)?)([dhms])/g)) seconds += Number(amount) * (LIFETIME_UNITS[unit as string] ?? 0);
    seconds = Math.round(seconds);
  }
  if (seconds === undefined) throw new Error(`Invalid --lifetime ${JSON.stringify(text)}: use seconds or a duration such as 6h, 90m or 2d`);
  if (seconds < 1) throw new Error(`Invalid --lifetime ${JSON.stringify(text)}: it must be at least 1s`);
  if (seconds > MAX_LIFETIME_SECONDS) throw new Error(`Invalid --lifetime ${JSON.stringify(text)}: the longest allowed is ${MAX_LIFETIME_SECONDS / 86_400}d`);
  return seconds;
}

/** The keys of an authorized_keys text: one per line, blank lines and `#` comments skipped. */
export function parseAuthorizedKeys(text: string, file: string): string[] {
  const keys = text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  if (keys.length === 0) throw new Error(`No keys in ${JSON.stringify(file)}: expected authorized_keys lines such as "ssh-ed25519 AAAA… you@laptop"`);
  return keys;
}

function readKeys(files: readonly string[]): string[] {
  return files.flatMap((file) => {
    const path = file.startsWith("~/") ? `${homedir()}${file.slice(1)}` : file;
    return parseAuthorizedKeys(readFileSync(path, "utf8"), file);
  });
}

export function createBody(id: string, flags: CreateFlags): CreateEnv {
  const specs = flags.vm ?? [];
  if (specs.length === 0) throw new Error("Give at least one --vm spec, e.g. --vm image=base,cpu=2,mem=1024");
  // What the command line says is checked before any file is read.
  const vms = specs.map(parseVmSpec);
  const lifetime = flags.lifetime === undefined ? undefined : parseLifetime(flags.lifetime);
  const keys = readKeys(flags.sshKey ?? []);
  // Without keys, as TTstack allows: nobody logs in over SSH, the VMs are reached through the controller.
  const body: CreateEnv = keys.length > 0 ? { id, ssh_keys: keys, vms } : { id, vms };
  if (flags.owner !== undefined) body.owner = flags.owner;
  if (lifetime !== undefined) body.lifetime = lifetime;
  return body;
}

/** Time left, from `expires_at` in Unix seconds (TTstack's timestamps). */
export function formatExpiry(env: Pick<Env, "expires_at">, now: number): string {
  const seconds = env.expires_at - now / 1000;
  return seconds <= 0 ? "expired" : formatSpan(seconds);
}

export const ENV_HEADERS = ["ID", "OWNER", "STATE", "VMS", "EXPIRES IN"] as const;

/** One row per environment; its state is Corral's (`status`: partial, failed, … where TTstack says active). */
export function envRows(envs: readonly Env[], now: number): string[][] {
  return envs.map((env) => [env.id, env.owner || "-", env.status, String(env.vm_ids.length), formatExpiry(env, now)]);
}

/** How to reach one VM: its SSH command and each other mapped port as `guest -> host:port`. */
export function vmAccess(vm: FleetVm): string[] {
  const lines: string[] = [];
  const ssh = sshCommand(vm);
  if (ssh !== undefined) lines.push(ssh);
  for (const [guest, port] of Object.entries(vm.port_map).sort(([a], [b]) => Number(a) - Number(b))) {
    if (guest !== "22") lines.push(`${guest} -> ${hostPort(vm.host_addr, port)}`);
  }
  return lines;
}

export function envDetails(detail: EnvDetail, now: number): string[] {
  const { env } = detail;
  const expiry = formatExpiry(env, now);
  const lines = [
    `Environment ${env.id}: ${env.status}${env.owner ? `, owner ${env.owner}` : ""}`,
    `  Created ${formatSince(env.created_at, now)}; ${expiry === "expired" ? "expired" : `expires in ${expiry}`} (${new Date(env.expires_at * 1000).toISOString()})`,
  ];
  if (env.ssh_keys.length === 0) lines.push("  No SSH keys: reach its VMs through the controller (the dashboard's shell)");
  for (const vm of detail.vms) {
    lines.push(
      "",
      `VM ${vm.id}: ${vm.status} on ${vm.host_id || "-"} (${vm.image}, ${vm.cpu} vCPUs, ${formatMib(vm.mem)} memory, ${formatMib(vm.disk)} disk${vm.deny_outgoing ? ", no outgoing traffic" : ""})`,
    );
    if (vm.error !== null) lines.push(`  Error: ${vm.error}`);
    const access = vmAccess(vm);
    lines.push(...(access.length > 0 ? access.map((line) => `  ${line}`) : ["  No ports mapped yet"]));
  }
  return lines;
}

/** A partial or failed environment exists, but the command did not do all it was asked: say so and exit 1. */
function reportFailures(detail: EnvDetail): void {
  const { env, vms } = detail;
  if (env.status !== "partial" && env.status !== "failed") return;
  const failed = vms.filter((vm) => vm.error !== null).length;
  process.stderr.write(`corral: ${failed} of ${vms.length} VMs of ${env.id} failed (see each VM's error); delete it with: corral env delete ${env.id}\n`);
  process.exitCode = 1;
}

function showEnv(detail: EnvDetail, flags: JsonFlag): void {
  if (flags.json) printJson(detail);
  else process.stdout.write(`${envDetails(detail, Date.now()).join("\n")}\n`);
}

export function registerEnvCommands(program: Command): Command {
  const env = program.command("env").description("Create, inspect, stop, start and delete environments on a fleet controller");

  addFleetOptions(
    env.command("create").description("Create an environment: VMs placed on the controller's hosts").argument("<id>", "letters, digits, '.', '_' and '-' (TTstack's names)"),
  )
    .option("--vm <spec>", "a VM, e.g. image=base,cpu=2,mem=1024,disk=40960,ports=80+443,engine=qemu,deny_outgoing (repeatable)", collect)
    .option("--ssh-key <file>", "authorized_keys file whose keys may log in as root (repeatable; none: no SSH login)", collect)
    .option("--owner <owner>", "an owner label")
    .option("--lifetime <duration>", "delete it after this long: seconds, or e.g. 6h, 90m, 2d (default 6h)")
    .option("--json", "print JSON")
    .action(
      action(async (id: string, flags: CreateFlags) => {
        const body = createBody(id, flags);
        const created = await withController(flags, (client) => client.envs.create(body));
        showEnv(created, flags);
        reportFailures(created);
      }),
    );

  addFleetOptions(env.command("list").alias("ls").description("List environments"))
    .option("--json", "print JSON")
    .action(
      action(async (flags: FleetFlags & JsonFlag) => {
        // A page at a time: the controller never builds one answer of a whole big fleet (a controller
        // without pages answers the whole list to the first request, which ends the walk).
        const envs = await withController(flags, async (client) => {
          const all: Env[] = [];
          for await (const page of client.envs.pages(500)) all.push(...page);
          return all;
        });
        if (flags.json) return printJson(envs);
        if (envs.length === 0) {
          process.stdout.write("No environments. Create one: corral env create ID --vm image=base --ssh-key ~/.ssh/id_ed25519.pub\n");
          return;
        }
        printTable(ENV_HEADERS, envRows(envs, Date.now()));
      }),
    );

  addFleetOptions(env.command("show").description("Show an environment's VMs and how to reach them").argument("<id>"))
    .option("--json", "print JSON")
    .action(
      action(async (id: string, flags: FleetFlags & JsonFlag) => {
        showEnv(await withController(flags, (client) => client.envs.get(id)), flags);
      }),
    );

  addFleetOptions(env.command("delete").alias("rm").description("Delete an environment and its VMs").argument("<id>")).action(
    action(async (id: string, flags: FleetFlags) => {
      const removal = await withController(flags, (client) => client.envs.remove(id));
      if (removal.status === "deleted") {
        process.stdout.write(`Deleted ${id}\n`);
        return;
      }
      const waiting = [...new Set(removal.env.vms.map((vm) => vm.host_id))].join(", ");
      process.stdout.write(`Deleting ${id}: not yet confirmed by ${waiting || "its hosts"}; the controller keeps trying (see: corral env show ${id})\n`);
    }),
  );

  for (const verb of ["stop", "start"] as const) {
    addFleetOptions(
      env
        .command(verb)
        .description(verb === "stop" ? "Stop every VM of an environment (disks are kept)" : "Start a stopped environment's VMs again")
        .argument("<id>"),
    )
      .option("--json", "print JSON")
      .action(
        action(async (id: string, flags: FleetFlags & JsonFlag) => {
          const changed = await withController(flags, (client) => client.envs[verb](id));
          if (flags.json) return printJson(changed);
          process.stdout.write(`Environment ${id}: ${changed.env.status}\n`);
        }),
      );
  }
  return env;
}
