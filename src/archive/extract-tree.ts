// Unpacks an uncompressed tar below one directory, safely: entry names are checked first (no absolute paths,
// no ".."), nothing is ever written through a symlink (parents must be real directories, files are opened
// with O_NOFOLLOW), and file contents stream to disk with backpressure.
import { constants } from "node:fs";
import { chmod, chown, lchown, link, lutimes, mkdir, open, stat, symlink, unlink, utimes } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Header } from "tar-stream";
import { matchesAny } from "../protocol/path-patterns.ts";
import { entrySegments, linkSegments, UnsafeEntryError } from "./entry-path.ts";
import { DirectoryAttributes, drain, forEachTarEntry, lstatOrUndefined } from "./tar-entries.ts";

export interface ExtractOptions {
  /** Owner of everything written (unset: the extracting process's). */
  uid?: number;
  gid?: number;
  /** Permission bits for regular files instead of the archive's; directories keep theirs. */
  fileMode?: number;
  /** Glob patterns (Slicer's syntax) of entries, relative to the destination, to leave out. */
  exclude?: readonly string[];
}

export interface ExtractResult {
  files: number;
  bytes: number;
}

/** The body is not a tar archive (or is cut short). */
export class MalformedArchiveError extends Error {
  constructor(cause: unknown) {
    super(`The body is not a valid tar archive: ${(cause as Error).message}`, { cause });
    this.name = "MalformedArchiveError";
  }
}

const SPECIAL_BITS = 0o7777;

/**
 * Unpacks `input` into `destination` (an existing directory). `input` is never destroyed, so an HTTP/2
 * request body can still be answered on when unpacking fails.
 */
export async function extractTree(input: Readable, destination: string, options: ExtractOptions = {}): Promise<ExtractResult> {
  const root = await stat(destination);
  if (!root.isDirectory()) throw new UnsafeEntryError(".", `the destination ${JSON.stringify(destination)} is not a directory`);
  const unpacker = new TreeUnpacker(destination, options);
  await forEachTarEntry(input, (header, body) => unpacker.add(header, body), { malformed: (cause) => new MalformedArchiveError(cause) });
  await unpacker.finish();
  return unpacker.result;
}

class TreeUnpacker {
  readonly result: ExtractResult = { files: 0, bytes: 0 };
  /** Directories known to be real directories (not symlinks) below the destination. */
  private readonly directories = new Set<string>();
  private readonly directoryAttributes = new DirectoryAttributes();

  constructor(
    private readonly destination: string,
    private readonly options: ExtractOptions,
  ) {
    this.directories.add("");
  }

  async add(header: Header, body: AsyncIterable<unknown>): Promise<void> {
    const segments = entrySegments(header.name);
    const skip = segments.length === 0 || this.excluded(segments);
    if (skip || !["file", "contiguous-file", "directory", "symlink", "link"].includes(header.type)) {
      // Root entries, excluded ones and devices, FIFOs: read past their content.
      return drain(body);
    }
    await this.ensureParents(header.name, segments);
    const path = join(this.destination, ...segments);
    switch (header.type) {
      case "directory":
        return this.addDirectory(header, segments, path);
      case "symlink":
        return this.addSymlink(header, path);
      case "link":
        return this.addHardLink(header, path);
      default:
        return this.addFile(header, path, body);
    }
  }

  /** An entry is left out when its path, or any directory above it, matches an exclude pattern. */
  private excluded(segments: readonly string[]): boolean {
    const patterns = this.options.exclude;
    if (!patterns || patterns.length === 0) return false;
    for (let depth = 1; depth <= segments.length; depth++) {
      if (matchesAny(patterns, segments.slice(0, depth).join("/"))) return true;
    }
    return false;
  }

  /** Creates missing parents; an existing parent must be a real directory. */
  private async ensureParents(name: string, segments: readonly string[]): Promise<void> {
    for (let depth = 1; depth < segments.length; depth++) {
      const relative = segments.slice(0, depth).join("/");
      if (this.directories.has(relative)) continue;
      const path = join(this.destination, ...segments.slice(0, depth));
      const existing = await lstatOrUndefined(path);
      if (!existing) {
        await mkdir(path, { mode: 0o755 });
        await this.own(path, false);
      } else if (!existing.isDirectory()) {
        throw new UnsafeEntryError(name, `${JSON.stringify(relative)} is ${existing.isSymbolicLink() ? "a symlink" : "not a directory"}`);
      }
      this.directories.add(relative);
    }
  }

  private async addDirectory(header: Header, segments: readonly string[], path: string): Promise<void> {
    const existing = await lstatOrUndefined(path);
    if (existing && !existing.isDirectory()) throw new UnsafeEntryError(header.name, "a file or symlink of that name is in the way");
    if (!existing) await mkdir(path, { mode: 0o755 });
    await this.own(path, false);
    this.directories.add(segments.join("/"));
    this.directoryAttributes.add(path, header.mode & SPECIAL_BITS, header.mtime);
  }

  private async addFile(header: Header, path: string, body: AsyncIterable<unknown>): Promise<void> {
    await this.clearWay(header.name, path);
    const mode = this.options.fileMode ?? header.mode & SPECIAL_BITS;
    const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, mode);
    await pipeline(body, handle.createWriteStream());
    await chmod(path, mode);
    await this.own(path, false);
    if (header.mtime) await utimes(path, header.mtime, header.mtime);
    this.result.files++;
    this.result.bytes += header.size;
  }

  private async addSymlink(header: Header, path: string): Promise<void> {
    await this.clearWay(header.name, path);
    // The link's target is the guest's business; the link itself is never followed while unpacking.
    await symlink(header.linkname, path);
    await this.own(path, true);
    if (header.mtime) await lutimes(path, header.mtime, header.mtime).catch(() => undefined);
  }

  private async addHardLink(header: Header, path: string): Promise<void> {
    const target = join(this.destination, ...linkSegments(header.name, header.linkname));
    const existing = await lstatOrUndefined(target);
    if (!existing || existing.isDirectory()) throw new UnsafeEntryError(header.name, `its hard link target ${JSON.stringify(header.linkname)} is not a file unpacked before it`);
    await this.clearWay(header.name, path);
    await link(target, path);
  }

  /** Removes a file or symlink where an entry goes; a directory in the way is an error. */
  private async clearWay(name: string, path: string): Promise<void> {
    const existing = await lstatOrUndefined(path);
    if (!existing) return;
    if (existing.isDirectory()) throw new UnsafeEntryError(name, "a directory of that name is in the way");
    if (!existing.isFile()) await unlink(path);
    else if (existing.nlink > 1) await unlink(path); // never write into another name's content
  }

  private async own(path: string, isLink: boolean): Promise<void> {
    const { uid, gid } = this.options;
    if (uid === undefined && gid === undefined) return;
    await (isLink ? lchown : chown)(path, uid ?? -1, gid ?? -1);
  }

  async finish(): Promise<void> {
    await this.directoryAttributes.apply();
  }
}
