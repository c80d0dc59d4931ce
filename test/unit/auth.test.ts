import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bearerToken, ensureToken, tokenFile, tokensMatch } from "../../src/http/auth.ts";

const dir = await mkdtemp(join(tmpdir(), "corral-auth-test-"));
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let count = 0;
const freshStateDir = (): string => join(dir, `state-${++count}`);
const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777;

describe("tokensMatch", { timeout: 20_000 }, () => {
  test("is true only for identical tokens", () => {
    const token = "a".repeat(64);
    assert.equal(tokensMatch(token, token), true);
    assert.equal(tokensMatch(`${token}`, "a".repeat(64)), true);
    assert.equal(tokensMatch(token, `${"a".repeat(63)}b`), false);
    assert.equal(tokensMatch("secret", "Secret"), false);
  });

  test("is false for tokens of different lengths, without throwing", () => {
    assert.equal(tokensMatch("short", "a much longer token"), false);
    assert.equal(tokensMatch("a much longer token", "short"), false);
    assert.equal(tokensMatch("abc", "abcd"), false, "a prefix is not a match");
  });

  test("handles empty strings", () => {
    assert.equal(tokensMatch("", "expected-token"), false);
    assert.equal(tokensMatch("expected-token", ""), false);
    assert.equal(tokensMatch("", ""), true);
  });

  test("compares the exact characters, including non-ASCII", () => {
    assert.equal(tokensMatch("tökén", "tökén"), true);
    assert.equal(tokensMatch("tökén", "token"), false);
  });
});

describe("bearerToken", { timeout: 20_000 }, () => {
  test("reads the token after the Bearer scheme, case-insensitively", () => {
    assert.equal(bearerToken("Bearer abc123"), "abc123");
    assert.equal(bearerToken("bearer abc123"), "abc123");
    assert.equal(bearerToken("BEARER abc123"), "abc123");
    assert.equal(bearerToken("Bearer    spaced   "), "spaced");
    assert.equal(bearerToken("Bearer\tabc"), "abc");
  });

  test('gives "" for an empty token ("Bearer ")', () => {
    assert.equal(bearerToken("Bearer "), "");
    assert.equal(bearerToken("Bearer    "), "");
  });

  test("gives undefined without a header, without the scheme or for other schemes", () => {
    assert.equal(bearerToken(undefined), undefined);
    assert.equal(bearerToken(""), undefined);
    assert.equal(bearerToken("Bearer"), undefined);
    assert.equal(bearerToken("Basic dXNlcjpwYXNz"), undefined);
    assert.equal(bearerToken("Token abc"), undefined);
    assert.equal(bearerToken("abc123"), undefined);
    assert.equal(bearerToken("BearerX abc"), undefined);
    assert.equal(bearerToken(" Bearer abc"), undefined);
  });

  test("keeps inner spaces of the token", () => {
    assert.equal(bearerToken("Bearer a b"), "a b");
  });
});

describe("ensureToken", { timeout: 20_000 }, () => {
  test("tokenFile is <state>/auth/token", () => {
    assert.equal(tokenFile("/var/lib/corral"), "/var/lib/corral/auth/token");
  });

  test("creates a 64-hex-digit token in a 0600 file inside a 0700 folder", async () => {
    const file = tokenFile(freshStateDir());
    const token = await ensureToken(file);
    assert.match(token, /^[0-9a-f]{64}$/);
    assert.equal(await readFile(file, "utf8"), `${token}\n`);
    assert.equal(await mode(file), 0o600);
    assert.equal(await mode(join(file, "..")), 0o700);
  });

  test("returns the same token on a second call, and a different one for another state folder", async () => {
    const file = tokenFile(freshStateDir());
    const first = await ensureToken(file);
    assert.equal(await ensureToken(file), first);
    assert.notEqual(await ensureToken(tokenFile(freshStateDir())), first);
  });

  test("keeps a token the operator wrote, trimmed", async () => {
    const file = tokenFile(freshStateDir());
    await mkdir(join(file, ".."), { recursive: true, mode: 0o700 });
    await writeFile(file, "  my-own-token-of-20ch  \n", { mode: 0o600 });
    assert.equal(await ensureToken(file), "my-own-token-of-20ch");
  });

  test("repairs a token file whose mode was loosened", async () => {
    const file = tokenFile(freshStateDir());
    const token = await ensureToken(file);
    await chmod(file, 0o644);
    assert.equal(await mode(file), 0o644);
    assert.equal(await ensureToken(file), token);
    assert.equal(await mode(file), 0o600);
  });

  test("rejects a token file that is too short, saying what to do", async () => {
    const file = tokenFile(freshStateDir());
    await mkdir(join(file, ".."), { recursive: true, mode: 0o700 });
    await writeFile(file, "fifteen-chars!!\n");
    await assert.rejects(ensureToken(file), {
      message: `The token in ${file} is too short: delete the file to have a new one made`,
    });
    await writeFile(file, "\n\n");
    await assert.rejects(ensureToken(file), /is too short/);
    await writeFile(file, "sixteen-chars!!!\n");
    assert.equal(await ensureToken(file), "sixteen-chars!!!");
  });
});
