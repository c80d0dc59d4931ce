// The daemon's secret store on a real folder, and the guest's secret files.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { pino } from "pino";
import { SecretStore } from "../../../src/daemon/secrets/secret-store.ts";
import { GuestSecrets } from "../../../src/guest/secrets.ts";
import { CorralError } from "../../../src/protocol/errors.ts";

const root = await mkdtemp(join(tmpdir(), "corral-secrets-test-"));
after(() => rm(root, { recursive: true, force: true }));
const quiet = pino({ level: "silent" });
let n = 0;
const freshDir = (): string => join(root, `case-${++n}`, "secrets");

function corral(code: string): (err: unknown) => boolean {
  return (err) => err instanceof CorralError && err.code === code;
}

const fields = (data: string, extra: Partial<{ permissions: string; uid: number; gid: number }> = {}) => ({
  data: Buffer.from(data),
  permissions: "0600",
  uid: 0,
  gid: 0,
  ...extra,
});

describe("SecretStore", () => {
  test("creates a 0700 folder with one 0600 file per secret; values survive a reopen", async () => {
    const dir = freshDir();
    const store = await SecretStore.open(dir, quiet);
    assert.equal(statSync(dir).mode & 0o777, 0o700);
    const header = await store.create("db-password", fields("s3cr3t", { permissions: "0640", uid: 1000, gid: 1001 }));
    assert.equal(header.size, 6);
    assert.equal(header.sha256, createHash("sha256").update("s3cr3t").digest("hex"));
    assert.equal(statSync(join(dir, "db-password")).mode & 0o777, 0o600);

    const reopened = await SecretStore.open(dir, quiet);
    assert.deepEqual(reopened.list(), [header]);
    const { data } = await reopened.read("db-password");
    assert.equal(data.toString(), "s3cr3t");
  });

  test("a taken name is secret_exists (409); unknown names are secret_not_found; bad names invalid_name", async () => {
    const store = await SecretStore.open(freshDir(), quiet);
    await store.create("a", fields("1"));
    await assert.rejects(store.create("a", fields("2")), corral("secret_exists"));
    assert.equal((await store.read("a")).data.toString(), "1", "the first value is kept");
    await assert.rejects(store.update("b", { data: Buffer.from("x") }), corral("secret_not_found"));
    await assert.rejects(store.remove("b"), corral("secret_not_found"));
    for (const bad of ["../x", "..", ".hidden", "a/b", "", "x".repeat(129), "a..b", "-rf"]) {
      await assert.rejects(store.create(bad, fields("x")), corral("invalid_name"), bad);
    }
    assert.deepEqual(await readdir(store.dir), ["a"]);
  });

  test("update changes what is given and keeps the rest; an update without data keeps the bytes", async () => {
    const store = await SecretStore.open(freshDir(), quiet);
    const created = await store.create("token", fields("one", { permissions: "0600", uid: 5, gid: 6 }));
    const modeOnly = await store.update("token", { permissions: "0644" });
    assert.equal(modeOnly.permissions, "0644");
    assert.equal(modeOnly.uid, 5);
    assert.equal(modeOnly.sha256, created.sha256);
    assert.equal((await store.read("token")).data.toString(), "one");
    const dataOnly = await store.update("token", { data: Buffer.from("two!") });
    assert.equal(dataOnly.size, 4);
    assert.equal(dataOnly.permissions, "0644");
    assert.equal((await store.read("token")).data.toString(), "two!");
  });

  test("every change bumps the generation; remove deletes the file", async () => {
    const store = await SecretStore.open(freshDir(), quiet);
    const start = store.generation;
    await store.create("k", fields("v"));
    await store.update("k", { uid: 1 });
    await store.remove("k");
    assert.equal(store.generation, start + 3);
    assert.deepEqual(await readdir(store.dir), []);
    assert.deepEqual(store.list(), []);
  });

  test("binary data is kept byte for byte, newlines included", async () => {
    const store = await SecretStore.open(freshDir(), quiet);
    const bytes = Buffer.from([0, 10, 255, 10, 13, 10, 0]);
    await store.create("bin", { ...fields(""), data: bytes });
    assert.deepEqual((await (await SecretStore.open(store.dir, quiet)).read("bin")).data, bytes);
  });

  test("leftovers of an interrupted write are removed; a foreign file is left alone and left out", async () => {
    const dir = freshDir();
    const store = await SecretStore.open(dir, quiet);
    await store.create("good", fields("x"));
    writeFileSync(join(dir, ".tmp-abc123"), "half a secret");
    writeFileSync(join(dir, "foreign"), "raw secret value without a header");
    const lines: string[] = [];
    const log = pino({ level: "error" }, { write: (line: string) => lines.push(line) });
    const reopened = await SecretStore.open(dir, log);
    assert.deepEqual(
      reopened.list().map((h) => h.name),
      ["good"],
    );
    assert.equal(existsSync(join(dir, ".tmp-abc123")), false);
    assert.equal(readFileSync(join(dir, "foreign"), "utf8"), "raw secret value without a header", "nothing is deleted on a guess");
    assert.equal(lines.length, 1);
    assert.equal(lines.join("").includes("raw secret value"), false, "the log never quotes a file's content");
  });

  test("concurrent creates of one name: exactly one wins", async () => {
    const store = await SecretStore.open(freshDir(), quiet);
    const results = await Promise.allSettled([1, 2, 3, 4].map((i) => store.create("race", fields(`v${i}`))));
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    assert.equal(results.filter((r) => r.status === "rejected" && corral("secret_exists")(r.reason)).length, 3);
  });
});

describe("GuestSecrets", () => {
  test("put writes the file with its mode and owner through a rename; list reports digests; remove deletes", async () => {
    const dir = join(root, "guest", "run", "corral", "secrets");
    const secrets = new GuestSecrets(dir, false);
    assert.deepEqual(secrets.list(), [], "no folder yet: nothing held");
    await secrets.put("api-key", { permissions: "0640", uid: 65534, gid: 65534 }, Buffer.from("k3y"));
    const stats = statSync(join(dir, "api-key"));
    assert.equal(stats.mode & 0o777, 0o640);
    assert.equal(stats.uid, 65534);
    assert.equal(stats.gid, 65534);
    assert.equal(statSync(dir).mode & 0o777, 0o755);
    assert.deepEqual(secrets.list(), [{ name: "api-key", size: 3, sha256: createHash("sha256").update("k3y").digest("hex"), permissions: "0640", uid: 65534, gid: 65534 }]);
    await secrets.put("api-key", { permissions: "0600", uid: 0, gid: 0 }, Buffer.from("new"));
    assert.equal(readFileSync(join(dir, "api-key"), "utf8"), "new");
    assert.deepEqual(await readdir(dir), ["api-key"], "no temporary files remain");
    assert.equal(secrets.remove("api-key"), true);
    assert.equal(secrets.remove("api-key"), false);
    assert.deepEqual(secrets.list(), []);
  });

  test("a reader never sees half a secret while it is rewritten", async () => {
    const dir = join(root, "guest2");
    const secrets = new GuestSecrets(dir, false);
    const a = Buffer.alloc(512 * 1024, "a");
    const b = Buffer.alloc(512 * 1024, "b");
    await secrets.put("big", { permissions: "0600", uid: 0, gid: 0 }, a);
    let writing = true;
    const seen = new Set<string>();
    const reader = (async () => {
      while (writing) {
        const content = readFileSync(join(dir, "big"));
        seen.add(content.length === a.length && (content.equals(a) || content.equals(b)) ? "whole" : "torn");
        await new Promise((r) => setImmediate(r));
      }
    })();
    for (let i = 0; i < 40; i++) await secrets.put("big", { permissions: "0600", uid: 0, gid: 0 }, i % 2 ? a : b);
    writing = false;
    await reader;
    assert.deepEqual([...seen], ["whole"]);
  });

  test("refuses a folder that is not on a tmpfs", async () => {
    const secrets = new GuestSecrets(join(root, "not-tmpfs"), true);
    const onTmpfs = (await import("node:fs")).statfsSync(root).type === 0x01021994;
    if (onTmpfs) return; // this machine's /tmp is a tmpfs: nothing to prove here
    await assert.rejects(secrets.put("x", { permissions: "0600", uid: 0, gid: 0 }, Buffer.from("x")), /not on a tmpfs/);
  });
});
