// What both of Corral's tar unpackers share (copies into a guest, extract-tree.ts; image layers,
// src/image/oci/apply-layer.ts): reading a tar stream entry by entry with backpressure, telling a broken
// archive from a failing disk, directory modes and times applied last, and lstat that answers "absent".
import type { Stats } from "node:fs";
import { chmod, lstat, utimes } from "node:fs/promises";
import type { Readable } from "node:stream";
import { extract as tarExtract, type Header } from "tar-stream";
import { pump } from "../util/pump.ts";
import { UnsafeEntryError } from "./entry-path.ts";

export interface TarWalkOptions {
  /** Turns an error of the tar parser (or of a decompressor) into the caller's "not an archive" error. */
  malformed: (cause: unknown) => Error;
  /** Errors the caller raises itself and wants through as they are (besides UnsafeEntryError). */
  passThrough?: (err: unknown) => boolean;
  /** Destroyed on failure (a decompressor between the input and the parser); never the caller's input. */
  ownedSource?: Readable;
}

/** zlib's codes for a corrupt stream: a broken archive, not a failing disk. */
const CORRUPT_STREAM_CODES = new Set(["Z_DATA_ERROR", "Z_BUF_ERROR"]);

/**
 * Feeds `source` to a tar parser and hands each entry to `handle` in order, its content unread until the
 * handler reads it (or drains it). Errors of the file system (with an errno code) and UnsafeEntryError pass
 * through; anything else means the stream is not a whole tar archive.
 */
export async function forEachTarEntry(source: Readable, handle: (header: Header, body: AsyncIterable<unknown>) => Promise<void>, options: TarWalkOptions): Promise<void> {
  const extract = tarExtract();
  const feeding = pump(source, extract);
  // A stream cut short must end the unpacking too, not leave it waiting for the rest.
  feeding.catch((err: unknown) => extract.destroy(err instanceof Error ? err : new Error(String(err))));
  try {
    for await (const entry of extract) await handle(entry.header, entry);
    await feeding;
  } catch (err) {
    extract.destroy();
    options.ownedSource?.destroy();
    feeding.catch(() => undefined);
    if (err instanceof UnsafeEntryError || options.passThrough?.(err)) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code === "string" && !CORRUPT_STREAM_CODES.has(code)) throw err;
    throw options.malformed(err);
  }
}

/** Drains an entry's content that is not written anywhere. */
export async function drain(body: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of body) void _;
}

/**
 * Directory modes and times, applied after every entry: a read-only directory must not stop its own
 * children being written, and setting a child's time must not move its parent's (deepest first).
 */
export class DirectoryAttributes {
  private readonly pending: { path: string; mode: number; mtime: Date | undefined }[] = [];

  add(path: string, mode: number, mtime: Date | undefined): void {
    this.pending.push({ path, mode, mtime });
  }

  /** `stillDirectory`: skip one a later entry replaced (image layers may). */
  async apply(options: { skipReplaced?: boolean } = {}): Promise<void> {
    for (const directory of this.pending.reverse()) {
      if (options.skipReplaced && !(await lstatOrUndefined(directory.path))?.isDirectory()) continue;
      await chmod(directory.path, directory.mode);
      if (directory.mtime) await utimes(directory.path, directory.mtime, directory.mtime);
    }
    this.pending.length = 0;
  }
}

/** lstat, or undefined when nothing is there (also when a parent is a file: ENOTDIR). */
export async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw err;
  }
}
