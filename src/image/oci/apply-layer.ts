// Applies one OCI/Docker image layer (a tar stream, plain or gzip) onto a staged root filesystem folder, the
// way a container runtime does: entries in order, `.wh.NAME` whiteouts delete NAME from the layers below,
// `.wh..wh..opq` empties a directory of what the layers below put there. The layer is hostile input: every
// path is resolved inside the root as if the root were `/` (a symlink to `/etc` means ROOT/etc, `..` never
// climbs above ROOT), the last component is never followed (files open with O_NOFOLLOW), and device nodes
// and FIFOs are skipped (the guest's /dev is devtmpfs).
import { constants } from "node:fs";
import { chmod, lchown, link, lutimes, mkdir, open, readdir, readlink, rm, symlink, utimes } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import type { Header } from "tar-stream";
import { DirectoryAttributes, drain, entrySegments, forEachTarEntry, lstatOrUndefined, UnsafeEntryError } from "../../archive/index.ts";

const WHITEOUT_PREFIX = ".wh.";
const OPAQUE_MARKER = ".wh..wh..opq";
const AUFS_META_PREFIX = ".wh..wh.";
const SPECIAL_BITS = 0o7777;
/** Linux's own limit on symlinks followed while resolving one path. */
const MAX_LINKS = 40;

export interface LayerResult {
  files: number;
  bytes: number;
  whiteouts: number;
  /** Device nodes and FIFOs left out. */
  skipped: number;
}

/** The layer is not a (gzip'd) tar, or is cut short. */
export class MalformedLayerError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "MalformedLayerError";
  }
}

/** Peeks at the first bytes: gzip is unpacked on the fly, zstd is refused by name, anything else is tar. */
async function decompressed(input: Readable): Promise<Readable> {
  const head: Buffer = await new Promise((resolve, reject) => {
    const onReadable = (): void => {
      const chunk = input.read() as Buffer | null;
      if (chunk === null) return;
      cleanup();
      resolve(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(Buffer.alloc(0));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const cleanup = (): void => {
      input.off("readable", onReadable);
      input.off("end", onEnd);
      input.off("error", onError);
    };
    input.on("readable", onReadable);
    input.on("end", onEnd);
    input.on("error", onError);
    onReadable();
  });
  input.unshift(head);
  if (head[0] === 0x1f && head[1] === 0x8b) {
    const gunzip = createGunzip();
    input.pipe(gunzip);
    input.on("error", (err) => gunzip.destroy(err));
    return gunzip;
  }
  if (head.readUInt32LE(0) === 0xfd2fb528) throw new MalformedLayerError("The layer is zstd-compressed, which this host cannot unpack: re-export the image with gzip layers");
  const plain = new PassThrough();
  input.pipe(plain);
  input.on("error", (err) => plain.destroy(err));
  return plain;
}

export async function applyLayer(input: Readable, root: string): Promise<LayerResult> {
  const applier = new LayerApplier(root);
  const source = await decompressed(input);
  await forEachTarEntry(source, (header, body) => applier.add(header, body), {
    malformed: (cause) => new MalformedLayerError(`The layer is not a valid tar archive: ${(cause as Error).message}`, { cause }),
    passThrough: (err) => err instanceof MalformedLayerError,
    ownedSource: source,
  });
  await applier.finish();
  return applier.result;
}

class LayerApplier {
  readonly result: LayerResult = { files: 0, bytes: 0, whiteouts: 0, skipped: 0 };
  /** Paths (relative, "/"-joined) this layer wrote, with their parents: an opaque marker keeps them. */
  private readonly written = new Set<string>();
  private readonly directoryAttributes = new DirectoryAttributes();
  private readonly isRoot = process.getuid?.() === 0;

  constructor(private readonly root: string) {}

  async add(header: Header, body: AsyncIterable<unknown>): Promise<void> {
    const segments = entrySegments(header.name);
    const drainBody = (): Promise<void> => drain(body);
    if (segments.length === 0) return drainBody();
    // AUFS' own bookkeeping (.wh..wh.plnk, .wh..wh.aufs and what is in them) is no part of the image.
    if (segments.some((segment, i) => segment.startsWith(AUFS_META_PREFIX) && !(segment === OPAQUE_MARKER && i === segments.length - 1))) return drainBody();
    const base = segments[segments.length - 1] as string;
    const parentSegments = await this.resolveDir(header.name, segments.slice(0, -1));
    const parent = join(this.root, ...parentSegments);
    if (base === OPAQUE_MARKER) {
      await drainBody();
      await this.makeOpaque(parentSegments);
      this.result.whiteouts++;
      return;
    }
    if (base.startsWith(WHITEOUT_PREFIX)) {
      await drainBody();
      const hidden = base.slice(WHITEOUT_PREFIX.length);
      if (hidden === "" || hidden === "." || hidden === "..") throw new UnsafeEntryError(header.name, "the whiteout names no file");
      await rm(join(parent, hidden), { recursive: true, force: true });
      this.result.whiteouts++;
      return;
    }
    const relative = [...parentSegments, base];
    const path = join(parent, base);
    this.markWritten(relative);
    switch (header.type) {
      case "directory":
        return this.addDirectory(header, path);
      case "symlink":
        await drainBody();
        return this.addSymlink(header, path);
      case "link":
        await drainBody();
        return this.addHardLink(header, path);
      case "file":
      case "contiguous-file":
        return this.addFile(header, path, body);
      default:
        // Devices, FIFOs, and tar's own extension entries that tar-stream passes on: nothing to write.
        this.result.skipped++;
        return drainBody();
    }
  }

  /**
   * The real directory that `segments` names inside the root, following symlinks as a chroot would and
   * creating missing directories. Returns the resolved segments (no symlinks left in them).
   */
  private async resolveDir(name: string, segments: readonly string[], depth = 0): Promise<string[]> {
    const resolved: string[] = [];
    const pending = [...segments];
    let links = depth;
    while (pending.length > 0) {
      const segment = pending.shift() as string;
      if (segment === "" || segment === ".") continue;
      if (segment === "..") {
        resolved.pop();
        continue;
      }
      const path = join(this.root, ...resolved, segment);
      const existing = await lstatOrUndefined(path);
      if (!existing) {
        await mkdir(path, { mode: 0o755 });
        resolved.push(segment);
      } else if (existing.isDirectory()) {
        resolved.push(segment);
      } else if (existing.isSymbolicLink()) {
        if (++links > MAX_LINKS) throw new UnsafeEntryError(name, "too many levels of symbolic links");
        const target = await readlink(path);
        if (target.startsWith("/")) resolved.length = 0;
        pending.unshift(...target.split("/"));
      } else {
        throw new UnsafeEntryError(name, `${JSON.stringify([...resolved, segment].join("/"))} is not a directory`);
      }
    }
    return resolved;
  }

  private markWritten(segments: readonly string[]): void {
    for (let depth = 1; depth <= segments.length; depth++) this.written.add(segments.slice(0, depth).join("/"));
  }

  /** Removes what lower layers put in the directory; entries of this layer stay, whatever their order. */
  private async makeOpaque(dirSegments: readonly string[]): Promise<void> {
    const dir = join(this.root, ...dirSegments);
    for (const child of await readdir(dir)) {
      const relative = [...dirSegments, child].join("/");
      if (!this.written.has(relative)) await rm(join(dir, child), { recursive: true, force: true });
    }
    this.markWritten(dirSegments);
  }

  private async addDirectory(header: Header, path: string): Promise<void> {
    const existing = await lstatOrUndefined(path);
    if (existing && !existing.isDirectory()) await rm(path, { force: true });
    if (!existing?.isDirectory()) await mkdir(path, { mode: 0o755 });
    await this.own(path, header);
    this.directoryAttributes.add(path, header.mode & SPECIAL_BITS, header.mtime);
  }

  private async addFile(header: Header, path: string, body: AsyncIterable<unknown>): Promise<void> {
    await this.clearWay(path);
    const mode = header.mode & SPECIAL_BITS;
    const handle = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    await pipeline(body, handle.createWriteStream());
    await this.own(path, header);
    // After chown: chown clears set-uid bits.
    await chmod(path, mode);
    if (header.mtime) await utimes(path, header.mtime, header.mtime);
    this.result.files++;
    this.result.bytes += header.size ?? 0;
  }

  private async addSymlink(header: Header, path: string): Promise<void> {
    await this.clearWay(path);
    // The target is the guest's business: it is only ever resolved inside the root (resolveDir).
    await symlink(header.linkname ?? "", path);
    await this.own(path, header);
    if (header.mtime) await lutimes(path, header.mtime, header.mtime).catch(() => undefined);
  }

  private async addHardLink(header: Header, path: string): Promise<void> {
    const linkname = header.linkname ?? "";
    const segments = entrySegments(linkname.replace(/^\/+/, ""));
    if (segments.length === 0) throw new UnsafeEntryError(header.name, "its hard link has no target");
    const parent = await this.resolveDir(header.name, segments.slice(0, -1));
    const target = join(this.root, ...parent, segments[segments.length - 1] as string);
    const existing = await lstatOrUndefined(target);
    // link(2) does not follow a symlink target, so the new name is at worst a second name of a link.
    if (!existing || existing.isDirectory()) throw new UnsafeEntryError(header.name, `its hard link target ${JSON.stringify(linkname)} is not a file of an earlier entry`);
    await this.clearWay(path);
    await link(target, path);
  }

  /** Whatever is where an entry goes (file, symlink, a whole directory) is replaced by the entry. */
  private async clearWay(path: string): Promise<void> {
    const existing = await lstatOrUndefined(path);
    if (existing) await rm(path, { recursive: existing.isDirectory(), force: true });
  }

  /** The layer's owners are kept when this process may set them (root); otherwise files stay ours. */
  private async own(path: string, header: Header): Promise<void> {
    if (!this.isRoot) return;
    await lchown(path, header.uid ?? 0, header.gid ?? 0);
  }

  /** Directory modes and times last; a directory a later entry replaced is skipped. */
  async finish(): Promise<void> {
    await this.directoryAttributes.apply({ skipReplaced: true });
  }
}
