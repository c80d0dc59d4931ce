// `corral service install|status|uninstall [daemon|controller|all]`: Corral's servers as systemd services,
// so that a host runs them without a terminal kept open. The units' text is src/setup/systemd-units.ts.
// On a machine where systemd is not running (a container), the units are written and the rest is said.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, statSync } from "node:fs";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import type { Command } from "commander";
import { corralHome } from "../image/home.ts";
import { controllerUnit, daemonUnit, SERVICE_ROLES, UNIT_NAMES, type ServiceRole } from "../setup/systemd-units.ts";
import { FROM_SOURCES, packagePath } from "../util/package-root.ts";
import { action, printTable } from "./output.ts";

const DEFAULT_UNIT_DIR = "/etc/systemd/system";
const DEFAULT_KEY_FILE = "/etc/corral/controller-api-key";

interface InstallFlags {
  unitDir: string;
  config?: string;
  controllerBind: string;
  controllerPort: string;
  apiKeyFile?: string;
  open?: boolean;
  database?: string;
  dryRun?: boolean;
  start: boolean;
  setup: boolean;
}

function roles(which: string | undefined): ServiceRole[] {
  if (which === undefined || which === "all") return [...SERVICE_ROLES];
  if ((SERVICE_ROLES as readonly string[]).includes(which)) return [which as ServiceRole];
  throw new Error(`Unknown service ${JSON.stringify(which)}: give daemon, controller or all`);
}

/** Is systemd the init system here (its runtime directory exists)? */
function systemdRuns(): boolean {
  return existsSync("/run/systemd/system");
}

function systemctl(args: string[]): { ok: boolean; out: string } {
  const result = spawnSync("systemctl", args, { encoding: "utf8" });
  return { ok: result.status === 0, out: `${result.stdout ?? ""}${result.stderr ?? ""}`.trim() };
}

/** How the units run Corral: this checkout's `corral` script, or the installed package's CLI under this node. */
function launcher(): string[] {
  const command = FROM_SOURCES ? [packagePath("corral")] : [process.execPath, packagePath("dist", "corral.js")];
  const file = command[command.length - 1] as string;
  if (!existsSync(file)) throw new Error(`Cannot find Corral's command at ${file}`);
  return command;
}

/** The controller's key file: the one given (it must be 0600 already), else a new one made at the default place. */
async function controllerKeyFile(flags: InstallFlags, say: (line: string) => void): Promise<string | undefined> {
  if (flags.open) return undefined;
  if (flags.apiKeyFile !== undefined) {
    const file = resolve(flags.apiKeyFile);
    if (!existsSync(file)) throw new Error(`--api-key-file ${JSON.stringify(file)}: no such file`);
    const mode = statSync(file).mode;
    if ((mode & 0o077) !== 0)
      throw new Error(`--api-key-file ${JSON.stringify(file)} is open to other users (mode ${(mode & 0o777).toString(8).padStart(4, "0")}): run "chmod 600 ${file}"`);
    if ((await readFile(file, "utf8")).trim().length < 16) throw new Error(`--api-key-file ${JSON.stringify(file)}: the key is too short (at least 16 characters)`);
    return file;
  }
  if (!existsSync(DEFAULT_KEY_FILE)) {
    if (flags.dryRun) return DEFAULT_KEY_FILE;
    await mkdir(dirname(DEFAULT_KEY_FILE), { recursive: true, mode: 0o700 });
    await writeFile(DEFAULT_KEY_FILE, `${randomBytes(24).toString("base64url")}\n`, { mode: 0o600 });
    await chmod(DEFAULT_KEY_FILE, 0o600);
    say(`made the controller's API key: ${DEFAULT_KEY_FILE} (0600; clients send it as Authorization: Bearer KEY)`);
  }
  return DEFAULT_KEY_FILE;
}

async function install(which: string | undefined, flags: InstallFlags): Promise<void> {
  const say = (line: string): void => void process.stdout.write(`${line}\n`);
  const chosen = roles(which);
  const port = Number(flags.controllerPort);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`--controller-port ${JSON.stringify(flags.controllerPort)} is not a port number`);
  if (flags.config !== undefined && !existsSync(flags.config)) throw new Error(`--config ${JSON.stringify(flags.config)}: no such file`);
  const common = { launcher: launcher(), home: corralHome().root };
  const units = new Map<ServiceRole, string>();
  if (chosen.includes("daemon")) units.set("daemon", daemonUnit({ ...common, config: flags.config === undefined ? undefined : resolve(flags.config) }));
  if (chosen.includes("controller")) {
    const apiKeyFile = await controllerKeyFile(flags, say);
    units.set("controller", controllerUnit({ ...common, bind: flags.controllerBind, port, apiKeyFile, database: flags.database }));
  }
  if (flags.dryRun) {
    for (const [role, text] of units) say(`# ${join(flags.unitDir, UNIT_NAMES[role])}\n${text}`);
    return;
  }
  if (units.has("daemon") && flags.setup) {
    // What `corral up` does first: the daemon needs the guest kernel and its images before it can start.
    const { runSetup } = await import("../setup/setup.ts");
    await runSetup();
  }
  await mkdir(flags.unitDir, { recursive: true });
  for (const [role, text] of units) {
    const file = join(flags.unitDir, UNIT_NAMES[role]);
    await writeFile(file, text, { mode: 0o644 });
    say(`wrote ${file}`);
  }
  if (!systemdRuns()) {
    say("systemd is not running on this machine: the units are written; start them where it runs (systemctl enable --now …)");
    return;
  }
  const names = [...units.keys()].map((role) => UNIT_NAMES[role]);
  const reload = systemctl(["daemon-reload"]);
  if (!reload.ok) throw new Error(`systemctl daemon-reload failed: ${reload.out}`);
  const enable = systemctl(["enable", ...(flags.start ? ["--now"] : []), ...names]);
  if (!enable.ok) throw new Error(`systemctl enable ${names.join(" ")} failed: ${enable.out}`);
  say(`${flags.start ? "enabled and started" : "enabled"}: ${names.join(", ")} (corral service status; journalctl -u ${names[0]})`);
}

async function status(which: string | undefined, flags: { unitDir: string }): Promise<void> {
  const running = systemdRuns();
  const rows = roles(which).map((role) => {
    const name = UNIT_NAMES[role];
    const file = join(flags.unitDir, name);
    if (!existsSync(file)) return [role, name, "not installed", "-", "-"];
    if (!running) return [role, name, file, "-", "no systemd here"];
    return [role, name, file, systemctl(["is-enabled", name]).out || "unknown", systemctl(["is-active", name]).out || "unknown"];
  });
  printTable(["SERVICE", "UNIT", "FILE", "ENABLED", "ACTIVE"], rows);
}

async function uninstall(which: string | undefined, flags: { unitDir: string }): Promise<void> {
  const say = (line: string): void => void process.stdout.write(`${line}\n`);
  const names = roles(which)
    .map((role) => UNIT_NAMES[role])
    .filter((name) => existsSync(join(flags.unitDir, name)));
  if (names.length === 0) return say("nothing installed");
  if (systemdRuns()) {
    const disable = systemctl(["disable", "--now", ...names]);
    if (!disable.ok) throw new Error(`systemctl disable ${names.join(" ")} failed: ${disable.out}`);
  }
  for (const name of names) {
    await rm(join(flags.unitDir, name));
    say(`removed ${join(flags.unitDir, name)}`);
  }
  if (systemdRuns()) systemctl(["daemon-reload"]);
  say(`kept: the state in ${corralHome().root} and the API key file, if any (remove them by hand)`);
}

export function registerServiceCommands(program: Command): void {
  const service = program.command("service").description("Run the daemon and the controller as systemd services");
  service
    .command("install")
    .argument("[which]", "daemon, controller or all", "all")
    .description("Write the systemd units, then enable and start them (where systemd runs)")
    .option("--unit-dir <dir>", "where the units go", DEFAULT_UNIT_DIR)
    .option("-c, --config <file>", "the daemon's configuration (YAML, Slicer's shape)")
    .option("--controller-bind <addr>", "the controller's address", "127.0.0.1")
    .option("--controller-port <port>", "the controller's port", "9200")
    .option("--api-key-file <file>", `the controller's API key (0600), handed over as a systemd credential (default: ${DEFAULT_KEY_FILE}, made when missing)`)
    .option("--open", "the controller without an API key (only where nothing else can reach it)")
    .option("--database <url>", "the controller's PostgreSQL, without a password")
    .option("--no-start", "enable the units without starting them")
    .option("--no-setup", "skip the set-up (guest kernel, images) the daemon needs; `corral up` does it too")
    .option("--dry-run", "print the units instead of writing them")
    .action(action((which: string, flags: InstallFlags) => install(which, flags)));
  service
    .command("status")
    .argument("[which]", "daemon, controller or all", "all")
    .description("Which units are installed, enabled and active")
    .option("--unit-dir <dir>", "where the units are", DEFAULT_UNIT_DIR)
    .action(action((which: string, flags: { unitDir: string }) => status(which, flags)));
  service
    .command("uninstall")
    .argument("[which]", "daemon, controller or all", "all")
    .description("Stop, disable and remove the units (the state and keys stay)")
    .option("--unit-dir <dir>", "where the units are", DEFAULT_UNIT_DIR)
    .action(action((which: string, flags: { unitDir: string }) => uninstall(which, flags)));
}
