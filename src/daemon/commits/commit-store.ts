// Commits on the host: STATE_DIR/commits/ID/ with the VM's disk at commit time (a qcow2 overlay whose
// backing file is the image or the template the VM came from), optionally its saved memory and device
// state, its console log so far, and commit.json. A commit in the making is written to `.c-ID` and renamed
// when whole, so a folder named ID is always a complete commit.
import { randomBytes } from "node:crypto";
import { readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CorralError } from "../../protocol/errors.ts";

export const COMMIT_ID_PATTERN = /^c-[0-9a-f]{12}$/;

/** commit.json, in the field names of Slicer's SDK (plus what a fork needs). */
export interface CommitMeta {
  commit_id: string;
  source_hostname: string;
  hostgroup: string;
  tags: string[];
  labels: Record<string, string>;
  cache_key: string;
  /** Whether the VM's memory was saved too (a fork resumes where the VM was) or only its disk (a fork boots). */
  memory: boolean;
  created_at: string;
  image: string;
  image_version: string;
  cpus: number;
  ram_bytes: number;
  /** The template whose RAM file the VM's memory was mapped from, if any: its forks need it too. */
  template: string | null;
  /** The NIC back end the memory was saved on (absent: "user", commits made before TAP modes); a state loads only on the same kind. */
  net?: "user" | "tap";
}

export interface CommitPaths {
  dir: string;
  disk: string;
  state: string;
  serialLog: string;
  meta: string;
}

function pathsIn(dir: string): CommitPaths {
  return { dir, disk: join(dir, "disk.qcow2"), state: join(dir, "state"), serialLog: join(dir, "serial.log"), meta: join(dir, "commit.json") };
}

export class CommitStore {
  constructor(private readonly stateDir: string) {}

  get dir(): string {
    return join(this.stateDir, "commits");
  }

  newId(): string {
    return `c-${randomBytes(6).toString("hex")}`;
  }

  /** Paths of a complete commit; `commit_not_found` (404) for an id that is malformed or unknown. */
  paths(id: string): CommitPaths {
    if (!COMMIT_ID_PATTERN.test(id)) throw new CorralError("commit_not_found", `Commit ${JSON.stringify(id)} does not exist (commit ids look like c-0123456789ab)`);
    return pathsIn(join(this.dir, id));
  }

  /** Where a commit is written before it is complete. */
  stagingPaths(id: string): CommitPaths {
    return pathsIn(join(this.dir, `.${id}`));
  }

  async publish(id: string, meta: CommitMeta): Promise<void> {
    const staging = this.stagingPaths(id);
    await writeFile(staging.meta, `${JSON.stringify(meta, null, 2)}\n`, { mode: 0o600 });
    await rename(staging.dir, this.paths(id).dir);
  }

  async get(id: string): Promise<CommitMeta> {
    const paths = this.paths(id);
    try {
      return JSON.parse(await readFile(paths.meta, "utf8")) as CommitMeta;
    } catch {
      throw new CorralError("commit_not_found", `Commit ${JSON.stringify(id)} does not exist`);
    }
  }

  async list(): Promise<CommitMeta[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const found: CommitMeta[] = [];
    for (const name of names) {
      if (!COMMIT_ID_PATTERN.test(name)) continue;
      found.push((await this.get(name).catch(() => undefined)) as CommitMeta);
    }
    return found.filter((m) => m !== undefined).sort((a, b) => a.created_at.localeCompare(b.created_at));
  }

  /** Bytes the commit takes on disk. */
  async size(id: string): Promise<number> {
    const paths = this.paths(id);
    let total = 0;
    for (const file of [paths.disk, paths.state, paths.serialLog]) total += (await stat(file).catch(() => undefined))?.size ?? 0;
    return total;
  }

  async remove(id: string): Promise<void> {
    await rm(this.paths(id).dir, { recursive: true, force: true });
  }

  /** Removes commits that were being written when the daemon stopped. */
  async removeDebris(): Promise<void> {
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      if (name.startsWith(".c-")) await rm(join(this.dir, name), { recursive: true, force: true });
    }
  }

  /** The templates that commits need (their forks map its RAM file). */
  async templatesInUse(): Promise<Set<string>> {
    return new Set((await this.list()).map((m) => m.template).filter((t): t is string => t !== null));
  }
}
