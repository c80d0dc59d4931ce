// A template's RAM file on tmpfs is allocated in full before any VM maps it (on tmpfs even a private read
// of a hole allocates a page, so clones grew the file until the filesystem was full and died of SIGBUS); on
// a disk filesystem it is left sparse. Real files: /dev/shm is tmpfs, the test folder a disk filesystem.
import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { mkdtemp, rm, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { allocatesOnRead, backRamFile, fullyAllocated } from "../../src/daemon/templates/ram-file.ts";

const MiB = 1024 * 1024;
const SHM = "/dev/shm";

describe("template RAM files", { skip: !existsSync(SHM) || !allocatesOnRead(SHM) ? "no tmpfs at /dev/shm" : false }, () => {
  test("on tmpfs a new file is created 0600 and allocated in full; an existing sparse one is filled in", async () => {
    const dir = await mkdtemp(join(SHM, "corral-ram-"));
    try {
      const fresh = join(dir, "ram");
      await backRamFile(fresh, 8 * MiB);
      assert.equal(statSync(fresh).size, 8 * MiB);
      assert.equal(statSync(fresh).mode & 0o777, 0o600);
      assert.ok(fullyAllocated(fresh));

      const sparse = join(dir, "old-ram");
      await backRamFile(sparse, 0);
      await truncate(sparse, 4 * MiB);
      assert.equal(fullyAllocated(sparse), false, "a template made before: sparse");
      await backRamFile(sparse, 4 * MiB);
      assert.ok(fullyAllocated(sparse));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("on a disk filesystem nothing is done: clones there allocate nothing when they read a hole", async () => {
    const dir = await mkdtemp(join(tmpdir(), "corral-ram-"));
    try {
      if (allocatesOnRead(dir)) return; // this host's /tmp is tmpfs: covered above
      await backRamFile(join(dir, "ram"), 8 * MiB);
      assert.equal(existsSync(join(dir, "ram")), false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a tmpfs that cannot hold the file refuses at once, with the system's words", async () => {
    // 64 TiB is more than /dev/shm may hold: tmpfs refuses before allocating anything.
    const dir = await mkdtemp(join(SHM, "corral-ram-"));
    try {
      await assert.rejects(backRamFile(join(dir, "ram"), 64 * 1024 * 1024 * MiB), /No space left on device/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
