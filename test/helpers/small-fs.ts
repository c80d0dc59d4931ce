// A small filesystem a test mounts for itself (an ext4 loop file, or a size-limited tmpfs), to run a daemon's
// state directory out of space. Files can be put aside on it to free space later; `dispose` kills whatever
// QEMU still uses it and unmounts it, also after a failed test.
import { execFileSync } from "node:child_process";
import { statfsSync } from "node:fs";
import { mkdir, mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findProcessesWithArgument } from "../../src/engine/index.ts";

const MiB = 1024 * 1024;

export class SmallFilesystem {
  private constructor(
    /** Where it is mounted. */
    readonly mount: string,
    private readonly base: string,
  ) {}

  static async ext4(sizeMiB: number): Promise<SmallFilesystem> {
    const base = await mkdtemp(join(tmpdir(), "corral-fs-"));
    const image = join(base, "fs.img");
    const mount = join(base, "mnt");
    await mkdir(mount);
    execFileSync("truncate", ["-s", `${sizeMiB}M`, image]);
    // No blocks reserved for root: the daemon and QEMU run as root and would otherwise eat into them.
    execFileSync("mkfs.ext4", ["-q", "-F", "-m", "0", image]);
    execFileSync("mount", ["-o", "loop", image, mount]);
    return new SmallFilesystem(mount, base);
  }

  static async tmpfs(sizeMiB: number): Promise<SmallFilesystem> {
    const base = await mkdtemp(join(tmpdir(), "corral-fs-"));
    const mount = join(base, "mnt");
    await mkdir(mount);
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${sizeMiB}m,mode=0700`, "tmpfs", mount]);
    return new SmallFilesystem(mount, base);
  }

  /** MiB free for root on it. */
  freeMiB(): number {
    const stats = statfsSync(this.mount);
    return Math.floor((stats.bavail * stats.bsize) / MiB);
  }

  /** Takes `sizeMiB` of real blocks in a file named `name`, to be given back with `release`. */
  async reserve(name: string, sizeMiB: number): Promise<void> {
    execFileSync("fallocate", ["--length", `${sizeMiB}M`, join(this.mount, name)]);
  }

  /** Writes into `name` until the filesystem is full, to the last block. */
  async fillUp(name: string): Promise<void> {
    const file = await open(join(this.mount, name), "a");
    const chunk = Buffer.alloc(4096, 1);
    try {
      for (;;) await file.write(chunk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
    } finally {
      await file.close().catch(() => undefined);
    }
  }

  async release(name: string): Promise<void> {
    await rm(join(this.mount, name), { force: true });
  }

  /** Kills every process with a file argument on it (QEMU left by a failed test), unmounts it, removes it all. */
  async dispose(): Promise<void> {
    for (const { pid } of findProcessesWithArgument(`${this.mount}/`)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        execFileSync("umount", [this.mount], { stdio: "ignore" });
        break;
      } catch {
        if (attempt === 19) execFileSync("umount", ["-l", this.mount], { stdio: "ignore" });
        else await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
    await rm(this.base, { recursive: true, force: true });
  }
}
