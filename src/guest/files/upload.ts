// Uploads into the guest: where they land (Slicer's legacy "exactly at path", or cp-v1's cp(1)-like rules)
// and how they are written (a file replaced atomically, a tar unpacked safely), streamed from the request.
import { kernelRandomBytes } from "../random.ts";
import type { Stats } from "node:fs";
import { chmod, chown, lstat, mkdir, open, realpath, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Readable } from "node:stream";
import { finished } from "node:stream/promises";
import { extractTree } from "../../archive/index.ts";
import { isSourceName } from "../../protocol/copy-mode.ts";
import type { UploadResult, UploadSpec } from "../../protocol/files.ts";
import { pump } from "../../util/pump.ts";
import { AgentRouteError } from "../http.ts";
import { resolveGuestPath } from "./guest-paths.ts";

const DEFAULT_FILE_MODE = 0o644;
// Each write is a thread-pool round trip (about 0.3 ms under emulation) and HTTP/2 hands over at most a
// frame at a time: a deep buffer lets the frames that arrive during one write go out together in the next.
const WRITE_BUFFER = 1024 * 1024;

async function statOrUndefined(path: string, follow: boolean): Promise<Stats | undefined> {
  try {
    return await (follow ? stat(path) : lstat(path));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

function sourceName(spec: UploadSpec): string {
  const name = spec.sourceName;
  if (name === undefined || !isSourceName(name)) {
    throw new AgentRouteError(400, "invalid_request", `Invalid source_name ${JSON.stringify(name ?? "")}: copying into an existing directory needs the source's base name`);
  }
  return name;
}

/** The file an upload of a single file writes. */
export async function fileDestination(spec: UploadSpec): Promise<string> {
  const path = resolveGuestPath(spec.path);
  if (spec.placement === "exact") return path;
  const existing = await statOrUndefined(path, true);
  if (existing?.isDirectory()) return join(path, sourceName(spec));
  if (!existing && spec.path.endsWith("/")) {
    throw new AgentRouteError(404, "file_not_found", `Cannot copy into ${JSON.stringify(spec.path)}: the directory does not exist`);
  }
  return path;
}

/** The directory a tar upload unpacks into (not created yet). */
export async function treeDestination(spec: UploadSpec): Promise<string> {
  const path = resolveGuestPath(spec.path);
  const existing = await statOrUndefined(path, true);
  if (existing && !existing.isDirectory()) {
    throw new AgentRouteError(400, "invalid_request", `Cannot unpack into ${JSON.stringify(path)}: it is a file, not a directory`);
  }
  if (spec.placement === "cp-v1" && existing && !spec.copyContents) return join(path, sourceName(spec));
  return path;
}

/**
 * Writes the body to `target` through a temporary file beside it, renamed into place once complete: an
 * interrupted upload leaves the old file untouched. A replaced file keeps its mode and owner unless the
 * request sets them; a symlink to a file is written through (as cp(1) does).
 */
export async function receiveFile(body: Readable, spec: UploadSpec): Promise<UploadResult> {
  let target = await fileDestination(spec);
  let existing = await statOrUndefined(target, false);
  if (existing?.isSymbolicLink()) {
    const resolved = await realpath(target).catch(() => undefined);
    if (resolved !== undefined) {
      target = resolved;
      existing = await statOrUndefined(target, false);
    }
  }
  if (existing?.isDirectory()) {
    throw new AgentRouteError(400, "invalid_request", `Cannot write ${JSON.stringify(target)}: it is a directory (copy a directory with mode=tar)`);
  }
  if (existing && !existing.isFile() && !existing.isSymbolicLink()) {
    throw new AgentRouteError(400, "invalid_request", `Cannot write ${JSON.stringify(target)}: it is not a regular file`);
  }
  await mkdir(dirname(target), { recursive: true });

  const mode = spec.permissions ?? (existing?.isFile() ? existing.mode & 0o7777 : DEFAULT_FILE_MODE);
  const temporary = join(dirname(target), `.${basename(target)}.corral-upload-${kernelRandomBytes(6).toString("hex")}`);
  const handle = await open(temporary, "wx", mode);
  const writer = handle.createWriteStream({ highWaterMark: WRITE_BUFFER });
  try {
    await pump(body, writer);
    await finished(writer);
    await chmod(temporary, mode);
    if (spec.uid !== undefined || spec.gid !== undefined) await chown(temporary, spec.uid ?? -1, spec.gid ?? -1);
    else if (existing?.isFile()) await chown(temporary, existing.uid, existing.gid);
    await rename(temporary, target);
  } catch (err) {
    writer.destroy();
    await unlink(temporary).catch(() => undefined);
    throw err;
  }
  return { path: target, files: 1, bytes: writer.bytesWritten };
}

/** Unpacks the body (a tar) into its destination, created when missing. */
export async function receiveTree(body: Readable, spec: UploadSpec): Promise<UploadResult> {
  const destination = await treeDestination(spec);
  const created = await mkdir(destination, { recursive: true });
  if (created !== undefined && (spec.uid !== undefined || spec.gid !== undefined)) await chown(destination, spec.uid ?? -1, spec.gid ?? -1);
  const result = await extractTree(body, destination, { uid: spec.uid, gid: spec.gid, fileMode: spec.permissions, exclude: spec.exclude });
  return { path: destination, ...result };
}
