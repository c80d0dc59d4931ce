// The system group every QEMU process Corral starts runs with (uid stays 0, so file access is unchanged): the
// sockets QEMU opens carry its id, which is how the wall (host-isolation-rules.ts) tells guests' traffic from
// the host's own. Made on first use; its id is looked up, never assumed.
import { readFileSync } from "node:fs";
import { CommandError, findProgram, run } from "../util/run.ts";

export const GUEST_GROUP = "corral-guests";

/** The group's id, or undefined when there is no such group. getent asks NSS, not only /etc/group. */
export async function lookUpGroup(name: string): Promise<number | undefined> {
  try {
    const line = (await run("getent", ["group", name])).trim();
    const gid = Number(line.split(":")[2]);
    if (!Number.isInteger(gid) || gid < 0) throw new Error(`Cannot read the id of group "${name}" from ${JSON.stringify(line)}`);
    return gid;
  } catch (err) {
    // getent's exit code 2: no such key.
    if (err instanceof CommandError && err.exitCode === 2) return undefined;
    throw err;
  }
}

/** The id of the guests' group, made (`groupadd --system`) if it does not exist yet. */
export async function guestGroupId(name = GUEST_GROUP): Promise<number> {
  const existing = await lookUpGroup(name);
  if (existing !== undefined) return existing;
  const groupadd = findProgram("groupadd");
  if (!groupadd) throw new Error(`Cannot find "groupadd" to create the group "${name}": install the Debian package "passwd"`);
  try {
    await run(groupadd, ["--system", name]);
  } catch (err) {
    // Another daemon starting at the same moment may have made it first.
    const made = await lookUpGroup(name);
    if (made !== undefined) return made;
    throw err;
  }
  const made = await lookUpGroup(name);
  if (made === undefined) throw new Error(`groupadd made the group "${name}" but getent does not find it`);
  return made;
}

/** The filesystem group id a process runs with (what its new sockets carry), or undefined if it is gone. */
export function processSocketGid(pid: number): number | undefined {
  try {
    const line = readFileSync(`/proc/${pid}/status`, "utf8")
      .split("\n")
      .find((l) => l.startsWith("Gid:"));
    // Gid: real, effective, saved set, filesystem.
    const fsgid = Number(line?.split(/\s+/)[4]);
    return Number.isInteger(fsgid) ? fsgid : undefined;
  } catch {
    return undefined;
  }
}
