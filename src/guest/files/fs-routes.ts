// The agent's filesystem routes: list a directory, describe a path, create a directory, remove a path.
import { chmod, lstat, mkdir, readdir, rm, rmdir, unlink } from "node:fs/promises";
import { basename } from "node:path";
import { AGENT_FILE_PATHS, parseOctalMode, type FsInfo } from "../../protocol/files.ts";
import { AgentRouteError, readJson, sendJson } from "../http.ts";
import type { AgentRouter } from "../router.ts";
import { fsError } from "./fs-errors.ts";
import { fsInfo } from "./fs-info.ts";
import { resolveGuestPath } from "./guest-paths.ts";

/** lstat calls in flight while listing a large directory. */
const LIST_CONCURRENCY = 32;

export async function listDirectory(path: string): Promise<FsInfo[]> {
  const names = (await readdir(path)).sort();
  const entries: (FsInfo | undefined)[] = new Array(names.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < names.length; i = next++) {
      const name = names[i] as string;
      try {
        entries[i] = fsInfo(name, await lstat(`${path === "/" ? "" : path}/${name}`));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err; // removed while listing: left out
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(LIST_CONCURRENCY, names.length) }, worker));
  return entries.filter((entry): entry is FsInfo => entry !== undefined);
}

export async function removePath(path: string, recursive: boolean): Promise<void> {
  if (path === "/") throw new AgentRouteError(400, "invalid_request", 'Cannot remove "/": it is the root of the guest');
  const stats = await lstat(path);
  if (!stats.isDirectory()) await unlink(path);
  else if (recursive) await rm(path, { recursive: true });
  else await rmdir(path);
}

interface MkdirRequest {
  path?: unknown;
  recursive?: unknown;
  mode?: unknown;
}

export function registerFsRoutes(router: AgentRouter): void {
  router.add("GET", AGENT_FILE_PATHS.readdir, async ({ stream, query }) => {
    const path = resolveGuestPath(query.get("path"));
    try {
      sendJson(stream, 200, await listDirectory(path));
    } catch (err) {
      throw fsError(err, "list", path);
    }
  });

  router.add("GET", AGENT_FILE_PATHS.stat, async ({ stream, query }) => {
    const path = resolveGuestPath(query.get("path"));
    try {
      sendJson(stream, 200, fsInfo(basename(path) || "/", await lstat(path)));
    } catch (err) {
      throw fsError(err, "describe", path);
    }
  });

  router.add("POST", AGENT_FILE_PATHS.mkdir, async ({ stream }) => {
    const body = (await readJson<MkdirRequest | null>(stream)) ?? {};
    const path = resolveGuestPath(body.path);
    const recursive = body.recursive === true;
    let mode: number | undefined;
    if (body.mode !== undefined) {
      mode = typeof body.mode === "string" ? parseOctalMode(body.mode) : undefined;
      if (mode === undefined) throw new AgentRouteError(400, "invalid_request", `Invalid mode ${JSON.stringify(body.mode)}: use an octal mode such as "0755"`);
    }
    try {
      // Like `mkdir -p -m MODE`: the mode is the new directory's (exactly, whatever the umask), not its parents'.
      // mkdir -p answers the first directory it made (undefined: none); a plain mkdir made `path` or threw.
      let created: string | undefined = path;
      if (recursive) created = await mkdir(path, { recursive: true });
      else await mkdir(path);
      if (mode !== undefined && created !== undefined) await chmod(path, mode);
      sendJson(stream, 200, { path, created: created !== undefined });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        throw new AgentRouteError(404, "file_not_found", `Cannot create directory ${JSON.stringify(path)}: its parent does not exist (use recursive=true)`);
      }
      throw fsError(err, "create directory", path);
    }
  });

  router.add("DELETE", AGENT_FILE_PATHS.remove, async ({ stream, query }) => {
    const path = resolveGuestPath(query.get("path"));
    try {
      await removePath(path, query.get("recursive") === "true");
      sendJson(stream, 200, { path, removed: true });
    } catch (err) {
      throw fsError(err, "remove", path);
    }
  });
}
