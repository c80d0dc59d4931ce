// A directory tree (or one file) as an uncompressed tar, produced while the consumer reads it: one file open at
// a time, each read only as fast as the tar is taken, so memory stays flat whatever the tree's size.
import { once } from "node:events";
import { open, lstat, readdir, readlink, stat, type FileHandle } from "node:fs/promises";
import { basename, join } from "node:path";
import { Readable } from "node:stream";
import type { Stats } from "node:fs";
import { pack as tarPack, type Header, type Pack } from "tar-stream";
import { matchesAny } from "../protocol/path-patterns.ts";

export interface PackOptions {
  /**
   * Name of the top entry. Set: entries are `NAME/`, `NAME/a`, ... (a file root is one entry `NAME`).
   * Unset: a directory's entries are relative to it (`a`, `b/`) and a file root is named after its base name.
   */
  topName?: string;
  /** Glob patterns (Slicer's syntax) of paths, relative to the root, to leave out. */
  exclude?: readonly string[];
  /** Another rule for what to leave out (a path relative to the root): .dockerignore's, for a build context. */
  skip?: (relativePath: string) => boolean;
}

const READ_CHUNK = 256 * 1024;

/** Streams a tar of `root` (symlinks are followed for the root only). Errors end the stream with that error. */
export function packTree(root: string, options: PackOptions = {}): Readable {
  const pack = tarPack();
  const packer = new TreePacker(pack, options.exclude ?? [], options.skip);
  packer
    .packRoot(root, options.topName)
    .then(() => pack.finalize())
    .catch((err: unknown) => pack.destroy(err instanceof Error ? err : new Error(String(err))));
  return Readable.from(pack, { objectMode: false, highWaterMark: READ_CHUNK });
}

class TreePacker {
  /** Rejects once the tar stream is gone (consumer closed it): every wait races with it. */
  private readonly gone: Promise<never>;

  constructor(
    private readonly pack: Pack,
    private readonly exclude: readonly string[],
    private readonly skip: ((relativePath: string) => boolean) | undefined,
  ) {
    this.gone = new Promise<never>((_, reject) => pack.once("close", () => reject(new Error("The tar stream was closed"))));
    this.gone.catch(() => undefined);
  }

  async packRoot(root: string, topName: string | undefined): Promise<void> {
    const stats = await stat(root);
    if (!stats.isDirectory()) {
      await this.addFile(root, topName ?? basename(root), stats);
      return;
    }
    if (topName !== undefined && topName !== "") {
      await this.addEntry(this.header(`${topName}/`, "directory", stats));
      await this.addChildren(root, "", `${topName}/`);
    } else {
      await this.addChildren(root, "", "");
    }
  }

  /** Adds the children of `dir`; `relative` is its path below the root (for exclude), `prefix` its tar name. */
  private async addChildren(dir: string, relative: string, prefix: string): Promise<void> {
    const names = (await readdir(dir)).sort();
    for (const name of names) {
      const childRelative = relative ? `${relative}/${name}` : name;
      if (this.exclude.length > 0 && matchesAny(this.exclude, childRelative)) continue;
      if (this.skip?.(childRelative)) continue;
      const path = join(dir, name);
      let stats: Stats;
      try {
        stats = await lstat(path);
      } catch (err) {
        if (vanished(err)) continue;
        throw err;
      }
      const tarName = `${prefix}${name}`;
      if (stats.isDirectory()) {
        await this.addEntry(this.header(`${tarName}/`, "directory", stats));
        await this.addChildren(path, childRelative, `${tarName}/`);
      } else if (stats.isFile()) {
        await this.addFile(path, tarName, stats);
      } else if (stats.isSymbolicLink()) {
        let target: string;
        try {
          target = await readlink(path);
        } catch (err) {
          if (vanished(err)) continue;
          throw err;
        }
        await this.addEntry({ ...this.header(tarName, "symlink", stats), linkname: target });
      }
      // Sockets, FIFOs and devices have no content to copy: left out.
    }
  }

  private header(name: string, type: Header["type"], stats: Stats): Header & { name: string } {
    return { name, type, mode: stats.mode & 0o7777, mtime: stats.mtime, uid: stats.uid, gid: stats.gid, size: 0 } as Header & { name: string };
  }

  private addEntry(header: Header): Promise<void> {
    return Promise.race([
      this.gone,
      new Promise<void>((resolve, reject) => {
        const sink = this.pack.entry(header, (err) => (err ? reject(err) : resolve()));
        sink.end(undefined);
      }),
    ]);
  }

  /**
   * Adds a regular file with the size it had when listed: a file that grows meanwhile is cut there, one that
   * shrinks is padded with zeros (a tar header cannot be taken back).
   */
  private async addFile(path: string, name: string, stats: Stats): Promise<void> {
    let handle: FileHandle;
    try {
      handle = await open(path, "r");
    } catch (err) {
      if (vanished(err)) return;
      throw err;
    }
    try {
      const size = stats.size;
      const done = new Promise<void>((resolve, reject) => {
        const sink = this.pack.entry({ ...this.header(name, "file", stats), size }, (err) => (err ? reject(err) : resolve()));
        this.copyInto(handle, size, sink).then(
          () => sink.end(undefined),
          (err: unknown) => sink.destroy(err instanceof Error ? err : new Error(String(err))),
        );
      });
      await Promise.race([this.gone, done]);
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  private async copyInto(handle: FileHandle, size: number, sink: ReturnType<Pack["entry"]>): Promise<void> {
    let written = 0;
    const write = async (chunk: Buffer): Promise<void> => {
      written += chunk.length;
      if (!sink.write(chunk)) await Promise.race([this.gone, once(sink, "drain")]);
    };
    while (written < size) {
      const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - written));
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, written);
      if (bytesRead === 0) break;
      await write(buffer.subarray(0, bytesRead));
    }
    while (written < size) await write(Buffer.alloc(Math.min(READ_CHUNK, size - written)));
  }
}

function vanished(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}
