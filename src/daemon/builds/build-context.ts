// A build's context on the host: the client's tar unpacked safely into the build's work folder (what
// .dockerignore leaves out is removed), the Dockerfile read from it, and COPY/ADD sources resolved and
// hashed for the step cache. Everything is checked here, before any VM boots.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { lstat, open, readdir, readFile, rm } from "node:fs/promises";
import { join, posix } from "node:path";
import type { Readable } from "node:stream";
import { extractTree, MalformedArchiveError, UnsafeEntryError } from "../../archive/index.ts";
import { DockerIgnore, dockerignoreRegExp } from "../../image/dockerfile/dockerignore.ts";
import { CorralError } from "../../protocol/errors.ts";

/** Where in the daemon's state directory build contexts are unpacked (emptied when the daemon starts). */
export const BUILDS_DIR = "builds";

/** A file or directory of the context a COPY/ADD takes. */
export interface ContextSource {
  /** Path relative to the context root. */
  path: string;
  absolute: string;
  kind: "file" | "directory";
  /** ADD of a local tar (plain or gzip): unpacked at the destination. */
  archive?: "tar" | "gzip";
}

export class BuildContext {
  private entries: { path: string; kind: "file" | "directory" }[] | undefined;

  constructor(readonly root: string) {}

  /**
   * Unpacks the context tar into `root` (an existing, empty folder) and applies .dockerignore, which never
   * removes the Dockerfile (`dockerfile`, its path in the context) nor itself, as in Docker.
   */
  static async receive(body: Readable, root: string, dockerfile = "Dockerfile"): Promise<BuildContext> {
    try {
      await extractTree(body, root);
    } catch (err) {
      if (err instanceof MalformedArchiveError || err instanceof UnsafeEntryError) {
        throw new CorralError("invalid_request", `Cannot read the build context: ${(err as Error).message}`, { cause: err });
      }
      throw err;
    }
    const context = new BuildContext(root);
    const ignore = new DockerIgnore(await readFile(join(root, ".dockerignore"), "utf8").catch(() => ""));
    if (!ignore.empty) {
      // A client that packed everything still gets Docker's context: what .dockerignore names is not there.
      const kept = new Set([".dockerignore", contextPath(dockerfile)]);
      for (const entry of await context.list()) {
        const holdsKept = [...kept].some((path) => path.startsWith(`${entry.path}/`));
        if (!kept.has(entry.path) && !holdsKept && ignore.ignores(entry.path)) await rm(join(root, entry.path), { recursive: true, force: true });
      }
      context.entries = undefined;
    }
    return context;
  }

  async readDockerfile(path: string): Promise<string> {
    const relative = contextPath(path);
    try {
      return await readFile(join(this.root, relative), "utf8");
    } catch {
      throw new CorralError("invalid_request", `The build context has no Dockerfile at ${JSON.stringify(path)}`);
    }
  }

  /** Every file and directory of the context, relative paths, parents before children. */
  async list(): Promise<{ path: string; kind: "file" | "directory" }[]> {
    if (this.entries) return this.entries;
    const found: { path: string; kind: "file" | "directory" }[] = [];
    const walk = async (relative: string): Promise<void> => {
      for (const name of (await readdir(join(this.root, relative))).sort()) {
        const path = relative ? `${relative}/${name}` : name;
        const stats = await lstat(join(this.root, path));
        if (stats.isDirectory()) {
          found.push({ path, kind: "directory" });
          await walk(path);
        } else if (stats.isFile()) found.push({ path, kind: "file" });
      }
    };
    await walk("");
    this.entries = found;
    return found;
  }

  /** The context entries a COPY/ADD source names (a path or a wildcard pattern); `missing` when none. */
  async resolve(source: string, add: boolean): Promise<ContextSource[]> {
    const relative = contextPath(source);
    if (relative === "") return [{ path: "", absolute: this.root, kind: "directory" }];
    let matches: { path: string; kind: "file" | "directory" }[];
    if (/[*?[]/.test(relative)) {
      const pattern = dockerignoreRegExp(relative);
      matches = (await this.list()).filter((entry) => pattern.test(entry.path));
    } else {
      matches = (await this.list()).filter((entry) => entry.path === relative);
    }
    return Promise.all(
      matches.map(async (entry) => {
        const absolute = join(this.root, entry.path);
        const archive = add && entry.kind === "file" ? await archiveKind(absolute) : undefined;
        return { ...entry, absolute, ...(archive ? { archive } : {}) };
      }),
    );
  }

  /** A hash of the sources' names, modes and contents: the cache key's part for a COPY/ADD. */
  async hash(sources: readonly ContextSource[]): Promise<string> {
    const hash = createHash("sha256");
    const all = await this.list();
    for (const source of sources) {
      const below = source.kind === "directory" ? all.filter((e) => source.path === "" || e.path.startsWith(`${source.path}/`)) : [];
      for (const entry of [{ path: source.path, kind: source.kind }, ...below]) {
        const absolute = join(this.root, entry.path);
        const stats = await lstat(absolute);
        hash.update(`${entry.kind}\0${entry.path}\0${stats.mode & 0o7777}\0`);
        if (entry.kind === "file") {
          for await (const chunk of createReadStream(absolute)) hash.update(chunk as Buffer);
        }
        hash.update("\0");
      }
    }
    return hash.digest("hex");
  }
}

/** A context-relative path. As in Docker, ".." cannot climb out: paths are cleaned from the context's root. */
function contextPath(path: string): string {
  return posix.normalize(`/${path}`).slice(1).replace(/\/+$/, "");
}

/** ADD unpacks local tar archives (plain or gzip); other compressions it cannot and says so. */
async function archiveKind(path: string): Promise<"tar" | "gzip" | undefined> {
  const handle = await open(path, "r");
  try {
    const head = Buffer.alloc(512);
    const { bytesRead } = await handle.read(head, 0, 512, 0);
    if (bytesRead >= 2 && head[0] === 0x1f && head[1] === 0x8b) return "gzip";
    if (bytesRead >= 262 && head.subarray(257, 262).toString("latin1") === "ustar") return "tar";
    if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) || head.subarray(0, 3).toString("latin1") === "BZh") {
      throw new CorralError(
        "invalid_request",
        `ADD cannot unpack ${JSON.stringify(path.split("/").pop())}: only plain and gzip tar archives are unpacked (use COPY and a RUN step)`,
      );
    }
    return undefined;
  } finally {
    await handle.close();
  }
}
