// The image's own defaults for commands (its Dockerfile's ENV, WORKDIR and USER, an OCI image's config),
// read from /etc/corral/image.json: an exec that does not say otherwise runs as a `docker run` of the
// image would. The file is read at each exec: it is small, and a build or the user may change it.
import { readFileSync } from "node:fs";
import type { ExecSpec } from "../protocol/agent.ts";
import { lookupUserByName } from "./users.ts";

export const IMAGE_CONFIG_PATH = "/etc/corral/image.json";

interface ImageDefaults {
  env?: string[];
  working_dir?: string;
  user?: string;
}

function readDefaults(path: string): ImageDefaults {
  try {
    const value = JSON.parse(readFileSync(path, "utf8")) as unknown;
    return value && typeof value === "object" ? (value as ImageDefaults) : {};
  } catch {
    return {};
  }
}

function groupId(name: string, groupFile: string): number | undefined {
  try {
    for (const line of readFileSync(groupFile, "utf8").split("\n")) {
      const [group, , gid] = line.split(":");
      if (group === name && gid !== undefined) return Number(gid);
    }
  } catch {
    // no group file: only numeric groups resolve
  }
  return undefined;
}

/** USER as Docker writes it (name, uid, name:group, uid:gid) as ids; undefined when it names nobody here. */
export function resolveImageUser(user: string, files = { passwd: "/etc/passwd", group: "/etc/group" }): { uid: number; gid: number } | undefined {
  const [name = "", group] = user.split(":", 2);
  const numeric = /^\d+$/.test(name);
  const entry = numeric ? undefined : lookupUserByName(name, files.passwd);
  const uid = numeric ? Number(name) : entry?.uid;
  if (uid === undefined) return undefined;
  let gid = entry?.gid ?? uid;
  if (group !== undefined && group !== "") {
    const found = /^\d+$/.test(group) ? Number(group) : groupId(group, files.group);
    if (found === undefined) return undefined;
    gid = found;
  }
  return { uid, gid };
}

/**
 * The spec with the image's defaults where the request left them unset: its environment under the
 * request's entries, its working directory, its user (only when the request names no uid).
 */
export function withImageDefaults(spec: ExecSpec, path = IMAGE_CONFIG_PATH): ExecSpec {
  const defaults = readDefaults(path);
  const result: ExecSpec = { ...spec };
  if (Array.isArray(defaults.env) && defaults.env.length > 0) {
    const named = new Set(spec.env.map((entry) => entry.slice(0, entry.indexOf("="))));
    result.env = [...defaults.env.filter((entry) => typeof entry === "string" && !named.has(entry.slice(0, entry.indexOf("=")))), ...spec.env];
  }
  if (spec.cwd === undefined && typeof defaults.working_dir === "string" && defaults.working_dir !== "") result.cwd = defaults.working_dir;
  if (spec.uid === undefined && typeof defaults.user === "string" && defaults.user !== "") {
    const ids = resolveImageUser(defaults.user);
    if (ids) {
      result.uid = ids.uid;
      if (spec.gid === undefined) result.gid = ids.gid;
    }
  }
  return result;
}
