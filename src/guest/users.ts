// Users of the guest as /etc/passwd describes them, and the environment commands run with.
import { readFileSync } from "node:fs";
import type { ExecSpec } from "../protocol/agent.ts";
import { AgentRouteError } from "./http.ts";

export const GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export interface GuestUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

/** Every user in a passwd file (none when it cannot be read). */
export function readUsers(passwdFile = "/etc/passwd"): GuestUser[] {
  let text: string;
  try {
    text = readFileSync(passwdFile, "utf8");
  } catch {
    return [];
  }
  const users: GuestUser[] = [];
  for (const line of text.split("\n")) {
    const [name, , uidText, gidText, , home, shell] = line.split(":");
    if (!name || uidText === undefined) continue;
    users.push({ name, uid: Number(uidText), gid: Number(gidText), home: home || "/", shell: shell || "/bin/sh" });
  }
  return users;
}

export function lookupUser(uid: number, passwdFile = "/etc/passwd"): GuestUser | undefined {
  return readUsers(passwdFile).find((u) => u.uid === uid);
}

export function lookupUserByName(name: string, passwdFile = "/etc/passwd"): GuestUser | undefined {
  return readUsers(passwdFile).find((u) => u.name === name);
}

/**
 * An exec spec whose `user` (a name) is turned into its uid and gid. A uid given beside it must be that
 * user's; a gid given beside it wins (as `sudo -u USER -g GROUP` would). Unknown users are a 400.
 */
export function resolveExecUser(spec: ExecSpec, passwdFile = "/etc/passwd"): ExecSpec {
  if (spec.user === undefined) return spec;
  const account = lookupUserByName(spec.user, passwdFile);
  if (!account) throw new AgentRouteError(400, "invalid_request", `User ${JSON.stringify(spec.user)} does not exist in the guest`);
  if (spec.uid !== undefined && spec.uid !== account.uid) {
    throw new AgentRouteError(400, "invalid_request", `User ${JSON.stringify(spec.user)} has uid ${account.uid}, not ${spec.uid}: give one or the other`);
  }
  return { ...spec, uid: account.uid, gid: spec.gid ?? account.gid };
}

/** The default environment for `uid`, with "KEY=VALUE" entries from the request on top. */
export function guestEnvironment(uid: number, extra: readonly string[]): NodeJS.ProcessEnv {
  const user = lookupUser(uid);
  const env: NodeJS.ProcessEnv = {
    PATH: GUEST_PATH,
    HOME: user?.home ?? (uid === 0 ? "/root" : "/"),
    USER: user?.name ?? String(uid),
    LOGNAME: user?.name ?? String(uid),
    SHELL: user?.shell ?? "/bin/sh",
    LANG: "C.UTF-8",
  };
  for (const entry of extra) {
    const eq = entry.indexOf("=");
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}
