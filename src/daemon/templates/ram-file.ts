// A template's RAM file must stay backed by its filesystem for as long as any VM maps it: a page fault the
// filesystem cannot back kills the QEMU process that took it with SIGBUS. Who allocates when:
//  - the template VM maps the file shared: every page its guest writes is allocated in the file then;
//  - clones map it privately: on ext4 (and most disk filesystems) reading a hole allocates nothing and
//    writes go to anonymous memory; on tmpfs, though, even a read of a hole allocates a page of the file,
//    so clones grow the file, up to its full size, as their guests touch memory the template never did.
// So on tmpfs the whole file is allocated before the template VM starts (fallocate: refused at once when
// the filesystem cannot hold it), and elsewhere the free space is checked before a build (see admission).
import { statfsSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { dirname } from "node:path";
import { run } from "../../util/run.ts";

/** statfs(2)'s f_type of tmpfs (and of /dev/shm). */
const TMPFS_MAGIC = 0x01021994;

/** Whether pages of a file in `dir` are allocated even when a private mapping only reads them. */
export function allocatesOnRead(dir: string): boolean {
  return statfsSync(dir).type === TMPFS_MAGIC;
}

/** Whether every byte of `file` has storage allocated (no holes left). */
export function fullyAllocated(file: string): boolean {
  const stats = statSync(file);
  return stats.blocks * 512 >= stats.size;
}

/**
 * Makes sure `file` (created 0600 when missing, `bytes` long) can back every page of a mapping without a
 * later allocation, where the filesystem would otherwise allocate on a read fault (tmpfs). Throws (ENOSPC
 * in the message) when the filesystem cannot hold it. Elsewhere it does nothing.
 */
export async function backRamFile(file: string, bytes: number): Promise<void> {
  if (!allocatesOnRead(dirname(file))) return;
  await (await open(file, "a", 0o600)).close();
  if (fullyAllocated(file) && statSync(file).size === bytes) return;
  await run("fallocate", ["--length", String(bytes), file]);
}
