import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { chmod, lstat, mkdir, mkdtemp, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createPrivateFile, tightenStateDir } from "../../src/util/private-state.ts";

const root = await mkdtemp(join(tmpdir(), "corral-private-"));
after(() => rm(root, { recursive: true, force: true }));
const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;

describe("tightenStateDir", { timeout: 20_000 }, () => {
  test("closes the directory, its files and folders, and the files of its secret folders; only removes bits", async () => {
    const dir = join(root, "state");
    await mkdir(join(dir, "auth"), { recursive: true });
    await mkdir(join(dir, "secrets"));
    await mkdir(join(dir, "vms", "sbox-1"), { recursive: true });
    const outside = join(root, "outside");
    await writeFile(outside, "x", { mode: 0o644 });
    for (const [file, m] of [
      ["corral.db", 0o644],
      ["corral.db-wal", 0o666],
      ["auth/token", 0o640],
      ["secrets/api", 0o604],
      ["host-id", 0o400],
      ["vms/sbox-1/disk.qcow2", 0o644],
    ] as const) {
      await writeFile(join(dir, file), "x");
      await chmod(join(dir, file), m);
    }
    await symlink(outside, join(dir, "link"));
    for (const folder of [dir, join(dir, "auth"), join(dir, "secrets"), join(dir, "vms")]) await chmod(folder, 0o755);

    const changed = await tightenStateDir(dir);
    assert.equal(await mode(dir), 0o700);
    for (const folder of ["auth", "secrets", "vms"]) assert.equal(await mode(join(dir, folder)), 0o700, folder);
    for (const file of ["corral.db", "corral.db-wal", "auth/token", "secrets/api"]) assert.equal(await mode(join(dir, file)), 0o600, file);
    assert.equal(await mode(join(dir, "host-id")), 0o400, "a stricter file keeps its mode");
    assert.equal(await mode(join(dir, "vms", "sbox-1", "disk.qcow2")), 0o644, "below the closed vms/ folder nothing needs changing");
    assert.equal(await mode(outside), 0o644, "a link's target is not touched");
    assert.ok((await lstat(join(dir, "link"))).isSymbolicLink());
    assert.ok(changed.includes(join(dir, "corral.db")) && !changed.includes(join(dir, "host-id")));
    assert.deepEqual(await tightenStateDir(dir), [], "a second pass changes nothing");
  });

  test("createPrivateFile makes an empty 0600 file and leaves an existing one as it is", async () => {
    const file = join(root, "new.db");
    createPrivateFile(file);
    assert.equal(await mode(file), 0o600);
    await writeFile(file, "data");
    createPrivateFile(file);
    assert.equal((await stat(file)).size, 4);
  });
});
