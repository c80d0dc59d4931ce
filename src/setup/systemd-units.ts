// The systemd units that run Corral's servers as services (`corral service install`): their text, pure, so
// that tests can pin it and `systemd-analyze verify` can check it. What matters in them, and why:
// - the daemon's VMs are QEMU processes in the daemon's cgroup. A graceful stop (SIGTERM) stops them itself;
//   a crash must leave them running so that the restarted daemon re-attaches them by pid, as after `kill -9`.
//   So only the main process is signalled (KillMode=process) and Restart=on-failure brings it back;
// - secrets are never on a command line (ps shows it to every user): the controller's API key is handed over
//   as a systemd credential (LoadCredential=, readable by the service only) and read from `%d`, the
//   credentials directory; the daemon's own token is made by the daemon in its state directory (0600);
// - state lives in /var/lib/corral (StateDirectory=, mode 0700), the same place `corral up` uses as root.

export const UNIT_NAMES = { daemon: "corral-daemon.service", controller: "corral-controller.service" } as const;
export type ServiceRole = keyof typeof UNIT_NAMES;
export const SERVICE_ROLES: readonly ServiceRole[] = ["daemon", "controller"];

/** The credential name the controller's key is loaded under (the file in `%d`). */
const API_KEY_CREDENTIAL = "corral-api-key";

export interface UnitOptions {
  /** The command that runs Corral (absolute paths: the checkout's `corral` launcher, or node and the built CLI). */
  launcher: readonly string[];
  /** CORRAL_HOME of the services: kernels, images and state. */
  home: string;
}

export interface DaemonUnitOptions extends UnitOptions {
  /** The daemon's YAML configuration (absolute), or none for the built-in sandbox group. */
  config?: string;
}

export interface ControllerUnitOptions extends UnitOptions {
  bind: string;
  port: number;
  /** The file the API key is loaded from (absolute, 0600); none: the controller's API is open. */
  apiKeyFile?: string;
  /** A PostgreSQL URL without a password (the password comes from the environment or ~/.pgpass). */
  database?: string;
}

/**
 * An argument as systemd's ExecStart reads it: quoted when it has anything but plain characters; `%` and `$`
 * doubled so that systemd expands nothing in it; a quote or backslash escaped.
 */
export function execArgument(arg: string): string {
  const escaped = arg.replace(/%/g, "%%").replace(/\$/g, "$$$$");
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(escaped)) return escaped;
  return `"${escaped.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** A unit file's value that must stay on one line and not open a specifier. */
function plain(value: string, what: string): string {
  if (/[\n\r\0]/.test(value)) throw new Error(`${what} ${JSON.stringify(value)} cannot go into a unit file: it has a line break or NUL`);
  return value.replace(/%/g, "%%");
}

/** `Environment=` for one variable (systemd expands specifiers there, not `$`). */
function environment(name: string, value: string): string {
  return `Environment="${name}=${plain(value, name).replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

/** systemd makes /var/lib/corral (0700) when that is the home; another home is the installer's to keep. */
function stateDirectory(home: string): string[] {
  return home.replace(/\/+$/, "") === "/var/lib/corral" ? ["StateDirectory=corral", "StateDirectoryMode=0700"] : [];
}

function serviceSection(lines: string[]): string {
  return ["[Service]", ...lines].join("\n");
}

const INSTALL = "[Install]\nWantedBy=multi-user.target\n";

export function daemonUnit(options: DaemonUnitOptions): string {
  const args = [...options.launcher, "daemon", ...(options.config === undefined ? [] : ["--config", options.config])];
  return [
    "# Written by `corral service install daemon`; `corral service uninstall daemon` removes it.",
    "[Unit]",
    "Description=Corral host daemon (Slicer-compatible micro-VM API)",
    "Wants=network-online.target",
    "After=network-online.target",
    "",
    serviceSection([
      "Type=exec",
      `ExecStart=${args.map(execArgument).join(" ")}`,
      environment("CORRAL_HOME", options.home),
      ...stateDirectory(options.home),
      "Restart=on-failure",
      "RestartSec=2s",
      "# Only the daemon is signalled: its VMs (QEMU, in this cgroup) outlive a crash and are re-attached by the",
      "# restarted daemon; a stop's SIGTERM has the daemon stop them itself, within TimeoutStopSec.",
      "KillMode=process",
      "TimeoutStopSec=180s",
      "LimitNOFILE=1048576",
    ]),
    "",
    INSTALL,
  ].join("\n");
}

export function controllerUnit(options: ControllerUnitOptions): string {
  if (options.database !== undefined && /^[a-z]+:\/\/[^/@]*:[^/@]*@/i.test(options.database)) {
    throw new Error(
      "--database has a password in it, which would be in the unit file and on the command line: leave it out and give it as PGPASSWORD in an EnvironmentFile= of 0600, or in /root/.pgpass",
    );
  }
  const args = [
    ...options.launcher,
    "controller",
    "--bind",
    options.bind,
    "--port",
    String(options.port),
    ...(options.database === undefined ? [] : ["--database", options.database]),
  ];
  const key = options.apiKeyFile === undefined ? [] : [`LoadCredential=${API_KEY_CREDENTIAL}:${plain(options.apiKeyFile, "The API key file")}`];
  // `%d` is the credentials directory; written after the escaped arguments so that it stays a specifier.
  const execStart = `ExecStart=${args.map(execArgument).join(" ")}${options.apiKeyFile === undefined ? "" : ` --api-key-file %d/${API_KEY_CREDENTIAL}`}`;
  return [
    "# Written by `corral service install controller`; `corral service uninstall controller` removes it.",
    "[Unit]",
    "Description=Corral fleet controller (TTstack and Virtumancer APIs, web dashboard)",
    "Wants=network-online.target",
    "After=network-online.target corral-daemon.service",
    "",
    serviceSection([
      "Type=exec",
      execStart,
      environment("CORRAL_HOME", options.home),
      ...key,
      "StateDirectory=corral",
      "StateDirectoryMode=0700",
      "Restart=on-failure",
      "RestartSec=2s",
      "TimeoutStopSec=60s",
      "NoNewPrivileges=yes",
      "ProtectSystem=full",
      "PrivateTmp=yes",
    ]),
    "",
    INSTALL,
  ].join("\n");
}
