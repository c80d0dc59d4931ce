import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readSecretFile, resolveSecret } from "../../src/cli/secret-options.ts";

const dir = await mkdtemp(join(tmpdir(), "corral-secret-opt-"));
after(() => rm(dir, { recursive: true, force: true }));

async function secretFile(name: string, content: string, mode: number): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, content);
  await chmod(file, mode);
  return file;
}

const KEY = { flag: "--api-key", fileFlag: "--api-key-file", envName: "CORRAL_API_KEY" };

describe("secrets given to the CLI", { timeout: 20_000 }, () => {
  test("a file only its owner can read is read and trimmed", async () => {
    assert.equal(readSecretFile(await secretFile("ok", "  the-key-0123456789\n", 0o600), "--api-key-file"), "the-key-0123456789");
    assert.equal(readSecretFile(await secretFile("ro", "k-0123456789abcdef", 0o400), "--api-key-file"), "k-0123456789abcdef");
  });

  test("a file open to others is refused, saying how to fix it", async () => {
    const loose = await secretFile("loose", "the-key-0123456789\n", 0o644);
    assert.throws(() => readSecretFile(loose, "--api-key-file"), {
      message: `--api-key-file "${loose}" is open to other users (mode 0644): run "chmod 600 ${loose}" (only its owner may read a secret)`,
    });
    const group = await secretFile("group", "k", 0o640);
    const writable = await secretFile("gw", "k", 0o620);
    assert.throws(() => readSecretFile(group, "--token-file"), /mode 0640/);
    assert.throws(() => readSecretFile(writable, "--token-file"), /mode 0620/);
  });

  test("a missing or empty file is refused", async () => {
    assert.throws(() => readSecretFile(join(dir, "nothing"), "--api-key-file"), /Cannot read --api-key-file ".*nothing": ENOENT/);
    const empty = await secretFile("empty", "\n", 0o600);
    assert.throws(() => readSecretFile(empty, "--api-key-file"), /is empty/);
  });

  test("the flag wins and warns; the file is read without a warning; else the environment", async () => {
    const warnings: string[] = [];
    const warn = (m: string): number => warnings.push(m);
    assert.equal(resolveSecret({ ...KEY, value: "flag-key", env: "env-key" }, warn), "flag-key");
    assert.deepEqual(warnings, ["--api-key on the command line is visible to every user of this machine (ps): use --api-key-file FILE or CORRAL_API_KEY instead"]);
    warnings.length = 0;
    assert.equal(resolveSecret({ ...KEY, file: await secretFile("f", "file-key", 0o600), env: "env-key" }, warn), "file-key");
    assert.equal(resolveSecret({ ...KEY, env: "env-key" }, warn), "env-key");
    assert.equal(resolveSecret({ ...KEY }, warn), undefined);
    assert.deepEqual(warnings, []);
    assert.throws(() => resolveSecret({ ...KEY, value: "a", file: "b" }, warn), /Give --api-key or --api-key-file, not both/);
  });
});
