// The state directory is private whatever it was left as: a real daemon and a real controller, started on a
// state directory opened to everyone (0755, the databases, tokens and secrets 0644), end with it 0700 and
// every secret file 0600, and lose nothing; on a fresh start the databases are 0600 from the first byte.
import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { chmod, readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { TestController } from "../helpers/controller-process.ts";
import { AUTH_TEST_CONFIG, TestDaemon } from "../helpers/daemon-process.ts";

const CONFIG = AUTH_TEST_CONFIG.replace("ram_mb: 512\n", "ram_mb: 512\n      template: false\n");

function mode(path: string): string {
  return (statSync(path).mode & 0o777).toString(8).padStart(4, "0");
}

/** Every path of `paths` that exists, with its mode, for one readable assertion. */
function modes(paths: string[]): Record<string, string> {
  return Object.fromEntries(paths.filter((p) => existsSync(p)).map((p) => [p, mode(p)]));
}

async function loosen(paths: string[]): Promise<void> {
  for (const path of paths.filter((p) => existsSync(p))) await chmod(path, statSync(path).isDirectory() ? 0o755 : 0o644);
}

describe("state directories are private", { timeout: 300_000 }, () => {
  let daemon: TestDaemon;
  let controller: TestController;

  before(async () => {
    daemon = await TestDaemon.create(CONFIG);
    controller = await TestController.create();
  });

  after(async () => {
    await controller?.dispose();
    await daemon?.dispose();
  });

  test("the daemon: a fresh database is 0600; a loosened directory is closed again, nothing lost", async () => {
    const dir = daemon.stateDir;
    await chmod(dir, 0o755);
    await daemon.start();
    const db = join(dir, "corral.db");
    assert.equal(mode(dir), "0700");
    assert.deepEqual(modes([db, `${db}-wal`, `${db}-shm`]), Object.fromEntries([db, `${db}-wal`, `${db}-shm`].filter((p) => existsSync(p)).map((p) => [p, "0600"])));
    await daemon.client.secrets.create("kept", { data: "s3cret" });
    await daemon.stop();

    const secrets = join(dir, "secrets");
    const secretFiles = (await readdir(secrets)).map((name) => join(secrets, name));
    const files = [db, `${db}-wal`, `${db}-shm`, join(dir, "auth", "token"), join(dir, "host-id"), join(dir, "config.yaml"), ...secretFiles];
    const folders = [dir, join(dir, "auth"), secrets];
    await loosen([...files, ...folders]);
    assert.equal(mode(db), "0644");

    await daemon.start();
    const expected = { ...Object.fromEntries(files.filter((p) => existsSync(p)).map((p) => [p, "0600"])), ...Object.fromEntries(folders.map((p) => [p, "0700"])) };
    assert.deepEqual(modes([...files, ...folders]), expected);
    assert.deepEqual(
      (await daemon.client.secrets.list()).map((s) => s.name),
      ["kept"],
    );
    await daemon.stop();
  });

  test("the controller: its database and key file are closed again, nothing lost", async () => {
    const dir = controller.stateDir;
    await controller.start();
    const db = join(dir, "controller.db");
    assert.equal(mode(db), "0600");
    await controller.stop();

    const files = [db, `${db}-wal`, `${db}-shm`, join(dir, "auth", "controller-api-key"), join(dir, "controller.json")];
    const folders = [dir, join(dir, "auth")];
    await loosen([...files, ...folders]);
    await controller.start();
    const expected = { ...Object.fromEntries(files.filter((p) => existsSync(p)).map((p) => [p, "0600"])), ...Object.fromEntries(folders.map((p) => [p, "0700"])) };
    assert.deepEqual(modes([...files, ...folders]), expected);
    assert.equal((await controller.call("GET", "/api/status")).status, 200);
  });
});
