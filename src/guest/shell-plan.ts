// What a shell request turns into: which program, with which arguments, as whom, where, with which
// environment. Bad requests (no such shell, no such directory) are refused before anything starts.
import { accessSync, constants as fsConstants, statSync } from "node:fs";
import { basename, join } from "node:path";
import type { ShellSpec } from "../protocol/shell.ts";
import { AgentRouteError } from "./http.ts";
import type { PtySpawn } from "./pty.ts";
import { GUEST_PATH, guestEnvironment, lookupUser } from "./users.ts";

export const DEFAULT_SHELL = "/bin/sh";
export const DEFAULT_COLS = 80;
export const DEFAULT_ROWS = 24;
export const SHELL_TERM = "xterm-256color";

/** Shells known to take -l (a login shell reads /etc/profile, which sets PATH and the prompt). */
const LOGIN_SHELLS = new Set(["sh", "ash", "bash", "dash", "zsh", "ksh", "mksh", "fish"]);
/** Login shells that refuse logins: a shell request for such a user gets /bin/sh instead. */
const NO_LOGIN = new Set(["false", "nologin"]);

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** An absolute path to the shell, looking a bare name up on PATH; undefined when there is none. */
export function resolveShell(shell: string, searchPath = GUEST_PATH): string | undefined {
  if (shell.includes("/")) return shell.startsWith("/") && isExecutableFile(shell) ? shell : undefined;
  for (const dir of searchPath.split(":")) {
    const candidate = join(dir, shell);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

export function validateShellSpec(value: unknown): ShellSpec {
  const spec = value as ShellSpec | null;
  const isId = (n: unknown): boolean => n === undefined || (Number.isInteger(n) && (n as number) >= 0 && (n as number) < 0xffffffff);
  const isSize = (n: unknown): boolean => n === undefined || (Number.isInteger(n) && (n as number) >= 1 && (n as number) <= 0xffff);
  const isText = (s: unknown): boolean => s === undefined || (typeof s === "string" && s.length > 0 && !s.includes("\0"));
  if (typeof spec !== "object" || spec === null || !isId(spec.uid) || !isId(spec.gid) || !isSize(spec.cols) || !isSize(spec.rows) || !isText(spec.shell) || !isText(spec.cwd)) {
    throw new AgentRouteError(400, "invalid_request", "The shell request is malformed");
  }
  return spec;
}

export function planShell(spec: ShellSpec, passwdFile = "/etc/passwd"): PtySpawn {
  const uid = spec.uid ?? 0;
  const account = lookupUser(uid, passwdFile);
  const gid = spec.gid ?? account?.gid ?? uid;

  const loginShell = account && !NO_LOGIN.has(basename(account.shell)) ? account.shell : DEFAULT_SHELL;
  const requested = spec.shell ?? loginShell;
  const file = resolveShell(requested);
  if (!file) throw new AgentRouteError(400, "invalid_request", `Shell ${JSON.stringify(requested)} does not exist in the guest (or is not executable)`);

  let cwd: string;
  if (spec.cwd !== undefined) {
    if (!spec.cwd.startsWith("/")) throw new AgentRouteError(400, "invalid_request", `Working directory ${JSON.stringify(spec.cwd)} must be an absolute path`);
    if (!isDirectory(spec.cwd)) throw new AgentRouteError(400, "invalid_request", `Working directory ${JSON.stringify(spec.cwd)} does not exist in the guest`);
    cwd = spec.cwd;
  } else {
    cwd = account && isDirectory(account.home) ? account.home : "/";
  }

  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(guestEnvironment(uid, []))) if (value !== undefined) env[key] = value;
  env.SHELL = file;
  env.TERM = SHELL_TERM;
  env.PWD = cwd;

  const plan: PtySpawn = {
    file,
    args: LOGIN_SHELLS.has(basename(file)) ? ["-l"] : [],
    env,
    cwd,
    cols: spec.cols ?? DEFAULT_COLS,
    rows: spec.rows ?? DEFAULT_ROWS,
  };
  // Root needs no switch; anyone else gets both ids (the addon changes user only when given both).
  if (uid !== 0 || gid !== 0) plan.user = { uid, gid };
  return plan;
}
