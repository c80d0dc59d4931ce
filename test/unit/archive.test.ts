import assert from "node:assert/strict";
import { existsSync, lstatSync, readFileSync, readlinkSync, statSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readdir, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import { extract as tarExtract, pack as tarPack, type Header } from "tar-stream";
import { entrySegments, extractTree, linkSegments, MalformedArchiveError, packTree, UnsafeEntryError } from "../../src/archive/index.ts";

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Names (and types) of the entries of a tar, in order. */
async function listTar(tar: Buffer): Promise<string[]> {
  const names: string[] = [];
  const extract = tarExtract();
  const done = (async () => {
    for await (const entry of extract) {
      names.push(`${entry.header.type === "symlink" ? "@" : ""}${entry.header.name}`);
      entry.resume();
    }
  })();
  extract.end(tar);
  await done;
  return names;
}

/** A tar built by hand, to feed the extractor what a hostile client could send. */
async function handMadeTar(entries: { header: Partial<Header> & { name: string }; body?: string }[]): Promise<Buffer> {
  const pack = tarPack();
  for (const { header, body } of entries) pack.entry({ type: "file", mode: 0o644, ...header }, body ?? "");
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe("tar entry names", () => {
  test("relative names are split into segments; the root is empty", () => {
    assert.deepEqual(entrySegments("a/b/c.txt"), ["a", "b", "c.txt"]);
    assert.deepEqual(entrySegments("./a//b/"), ["a", "b"]);
    assert.deepEqual(entrySegments("./"), []);
    assert.deepEqual(entrySegments("."), []);
    assert.deepEqual(entrySegments("dir with space/naïve ☃.txt"), ["dir with space", "naïve ☃.txt"]);
    assert.deepEqual(entrySegments("a/..b/c.."), ["a", "..b", "c.."], "dots inside names are fine");
  });

  test("absolute names, .. and NUL are refused", () => {
    for (const name of ["/etc/passwd", "../escape", "a/../../b", "a/..", "a\0b"]) {
      assert.throws(() => entrySegments(name), UnsafeEntryError, name);
    }
  });

  test("hard link targets stay inside the destination", () => {
    assert.deepEqual(linkSegments("x", "./a/b"), ["a", "b"]);
    assert.throws(() => linkSegments("x", "/etc/shadow"), /outside the destination/);
    assert.throws(() => linkSegments("x", "../up"), /outside the destination/);
    assert.throws(() => linkSegments("x", "."), /no target/);
  });
});

describe("packTree and extractTree on real files", () => {
  let work: string;
  let source: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "corral-archive-"));
    source = join(work, "my project");
    await mkdir(join(source, "sub dir", "ünïcödé 目录"), { recursive: true });
    await writeFile(join(source, "read me.txt"), "hello\n");
    await writeFile(join(source, "sub dir", "ünïcödé 目录", "☃ snow.bin"), Buffer.from([0, 1, 2, 255]));
    await writeFile(join(source, "run.sh"), "#!/bin/sh\necho hi\n");
    await chmod(join(source, "run.sh"), 0o750);
    await writeFile(join(source, "debug.log"), "noise");
    await writeFile(join(source, "sub dir", "trace.log"), "noise");
    await symlink("read me.txt", join(source, "link"));
    await utimes(join(source, "read me.txt"), new Date("2020-01-02T03:04:05Z"), new Date("2020-01-02T03:04:05Z"));
    await writeFile(join(source, "x".repeat(120)), "a long name needs a PAX header");
  });

  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test("the named layout puts the directory's own name on top", async () => {
    const names = await listTar(await collect(packTree(source, { topName: "my project" })));
    assert.equal(names[0], "my project/");
    assert.ok(
      names.every((n) => n.startsWith("my project/") || n.startsWith("@my project/")),
      names.join(", "),
    );
    assert.ok(names.includes("my project/sub dir/ünïcödé 目录/☃ snow.bin"));
    assert.ok(names.includes("@my project/link"));
  });

  test("the contents layout makes entries relative to the directory", async () => {
    const names = await listTar(await collect(packTree(source)));
    assert.ok(names.includes("read me.txt"));
    assert.ok(names.includes("sub dir/"));
    assert.ok(names.includes(`${"x".repeat(120)}`));
    assert.equal(
      names.some((n) => n.includes("my project")),
      false,
    );
  });

  test("exclude patterns leave out files and whole directories", async () => {
    const names = await listTar(await collect(packTree(source, { exclude: ["*.log", "sub dir/ünïcödé 目录"] })));
    assert.equal(
      names.some((n) => n.endsWith(".log")),
      false,
    );
    assert.equal(
      names.some((n) => n.includes("ünïcödé")),
      false,
    );
    assert.ok(names.includes("read me.txt"));
  });

  test("a file root is one entry named after it", async () => {
    assert.deepEqual(await listTar(await collect(packTree(join(source, "read me.txt")))), ["read me.txt"]);
    assert.deepEqual(await listTar(await collect(packTree(join(source, "read me.txt"), { topName: "other" }))), ["other"]);
  });

  test("a round trip keeps names, bytes, modes, symlinks and times", async () => {
    const destination = join(work, "out-roundtrip");
    await mkdir(destination);
    const result = await extractTree(packTree(source, { topName: "my project" }), destination);
    const copy = join(destination, "my project");
    assert.equal(readFileSync(join(copy, "read me.txt"), "utf8"), "hello\n");
    assert.deepEqual([...readFileSync(join(copy, "sub dir", "ünïcödé 目录", "☃ snow.bin"))], [0, 1, 2, 255]);
    assert.equal(statSync(join(copy, "run.sh")).mode & 0o777, 0o750);
    assert.equal(readlinkSync(join(copy, "link")), "read me.txt");
    assert.equal(statSync(join(copy, "read me.txt")).mtime.toISOString(), "2020-01-02T03:04:05.000Z");
    assert.equal(result.files, 6);
    assert.equal(result.bytes, 6 + 4 + 18 + 5 + 5 + 30);
  });

  test("fileMode overrides the archive's file modes, not the directories'", async () => {
    const destination = join(work, "out-modes");
    await mkdir(destination);
    await extractTree(packTree(source), destination, { fileMode: 0o600 });
    assert.equal(statSync(join(destination, "run.sh")).mode & 0o777, 0o600);
    assert.equal(statSync(join(destination, "sub dir")).mode & 0o777, statSync(join(source, "sub dir")).mode & 0o777);
  });

  test("excluding a directory on unpack leaves out everything below it", async () => {
    const destination = join(work, "out-exclude");
    await mkdir(destination);
    await extractTree(packTree(source), destination, { exclude: ["sub dir", "*.log"] });
    assert.deepEqual((await readdir(destination)).sort(), ["link", "read me.txt", "run.sh", "x".repeat(120)].sort());
  });

  test("entries escaping the destination are refused before anything is written", async () => {
    for (const name of ["../evil.txt", "/tmp/evil.txt", "ok/../../evil.txt"]) {
      const destination = await mkdtemp(join(work, "hostile-"));
      const tar = await handMadeTar([{ header: { name }, body: "pwned" }]);
      await assert.rejects(extractTree(Readable.from([tar]), destination), UnsafeEntryError, name);
      assert.equal(existsSync(join(work, "evil.txt")), false);
      assert.deepEqual(await readdir(destination), []);
    }
  });

  test("nothing is written through a symlink, whatever its target", async () => {
    const destination = await mkdtemp(join(work, "hostile-link-"));
    const outside = await mkdtemp(join(work, "outside-"));
    const tar = await handMadeTar([{ header: { name: "escape", type: "symlink", linkname: outside } }, { header: { name: "escape/evil.txt" }, body: "pwned" }]);
    await assert.rejects(extractTree(Readable.from([tar]), destination), /"escape" is a symlink/);
    assert.deepEqual(await readdir(outside), []);

    // A symlink in place of a file is replaced, not written through.
    const again = await mkdtemp(join(work, "hostile-link-"));
    await writeFile(join(outside, "victim"), "safe");
    await symlink(join(outside, "victim"), join(again, "victim"));
    await extractTree(Readable.from([await handMadeTar([{ header: { name: "victim" }, body: "new" }])]), again);
    assert.equal(readFileSync(join(outside, "victim"), "utf8"), "safe");
    assert.equal(lstatSync(join(again, "victim")).isFile(), true);
  });

  test("a body that is not a tar is a MalformedArchiveError", async () => {
    const destination = await mkdtemp(join(work, "garbage-"));
    await assert.rejects(extractTree(Readable.from([Buffer.alloc(1024, 0x41)]), destination), MalformedArchiveError);
  });

  test("extraction never destroys its input (an HTTP/2 request can still be answered)", async () => {
    const destination = await mkdtemp(join(work, "keep-input-"));
    const input = new PassThrough();
    input.write(await handMadeTar([{ header: { name: "../x" } }]));
    await assert.rejects(extractTree(input, destination), UnsafeEntryError);
    assert.equal(input.destroyed, false);
    assert.equal(input.isPaused(), true, "the rest of the body is left unread");
  });
});
