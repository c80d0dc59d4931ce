import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { lstat, mkdir, mkdtemp, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CpioArchive } from "../../src/image/cpio.ts";

interface NewcEntry {
  offset: number;
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  filesize: number;
  devMajor: number;
  devMinor: number;
  rdevMajor: number;
  rdevMinor: number;
  namesize: number;
  check: number;
  name: string;
  dataOffset: number;
  data: Buffer;
}

const HEADER_FIELDS = ["ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devMajor", "devMinor", "rdevMajor", "rdevMinor", "namesize", "check"] as const;

/** An independent reader of the newc format, strict about magic, alignment and padding bytes. */
function readNewc(buffer: Buffer): { entries: NewcEntry[]; end: number } {
  const entries: NewcEntry[] = [];
  let offset = 0;
  for (;;) {
    assert.equal(offset % 4, 0, `header at ${offset} is 4-byte aligned`);
    assert.equal(buffer.toString("ascii", offset, offset + 6), "070701", `magic at ${offset}`);
    const fields: Record<string, number> = {};
    HEADER_FIELDS.forEach((field, i) => {
      const text = buffer.toString("ascii", offset + 6 + i * 8, offset + 14 + i * 8);
      assert.match(text, /^[0-9a-f]{8}$/, `${field} is 8 lower-case hex digits`);
      fields[field] = parseInt(text, 16);
    });
    const namesize = fields.namesize as number;
    const nameStart = offset + 110;
    assert.equal(buffer[nameStart + namesize - 1], 0, "name is NUL-terminated");
    const name = buffer.toString("utf8", nameStart, nameStart + namesize - 1);
    const dataOffset = Math.ceil((nameStart + namesize) / 4) * 4;
    assert.ok(
      buffer.subarray(nameStart + namesize, dataOffset).every((b) => b === 0),
      "name padding is zeros",
    );
    const filesize = fields.filesize as number;
    const data = buffer.subarray(dataOffset, dataOffset + filesize);
    assert.equal(data.length, filesize, "data is complete");
    const next = Math.ceil((dataOffset + filesize) / 4) * 4;
    assert.ok(
      buffer.subarray(dataOffset + filesize, next).every((b) => b === 0),
      "data padding is zeros",
    );
    entries.push({ offset, ...(fields as Omit<NewcEntry, "offset" | "name" | "dataOffset" | "data">), name, dataOffset, data });
    offset = next;
    if (name === "TRAILER!!!") return { entries, end: offset };
  }
}

function sample(): CpioArchive {
  return new CpioArchive()
    .directory("bin")
    .file("bin/hello", "hi\n", 0o755)
    .symlink("bin/sh", "hello")
    .directory("dev")
    .characterDevice("dev/console", 5, 1)
    .characterDevice("dev/null", 1, 3, 0o666)
    .directory("etc", 0o700)
    .file("etc/empty", "")
    .file("etc/four", "1234", 0o600);
}

function cpio(args: string[], input: Buffer, cwd?: string): { status: number | null; stdout: string; stderr: string } {
  // A fixed umask, so the extracted modes do not depend on the caller's.
  const result = spawnSync("sh", ["-c", 'umask 022 && exec cpio "$@"', "sh", ...args], {
    input,
    cwd,
    env: { ...process.env, TZ: "UTC", LC_ALL: "C", LANG: "C" },
    encoding: "utf8",
  });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("CpioArchive byte layout", () => {
  test("a one-file archive is exactly these bytes", () => {
    const buffer = new CpioArchive().file("a", "hi").toBuffer();
    const zeros = "00000000";
    const expected = Buffer.concat([
      Buffer.from(`070701${"00000001"}${"000081a4"}${zeros}${zeros}${"00000001"}${zeros}${"00000002"}${zeros}${zeros}${zeros}${zeros}${"00000002"}${zeros}`, "ascii"),
      Buffer.from("a\0", "ascii"),
      Buffer.from("hi\0\0", "ascii"),
      Buffer.from(`070701${zeros}${zeros}${zeros}${zeros}${"00000001"}${zeros}${zeros}${zeros}${zeros}${zeros}${zeros}${"0000000b"}${zeros}`, "ascii"),
      Buffer.from("TRAILER!!!\0\0\0\0", "ascii"),
    ]);
    assert.equal(buffer.length, 240);
    assert.deepEqual(buffer, expected);
  });

  test("an empty archive is only the trailer", () => {
    const { entries, end } = readNewc(new CpioArchive().toBuffer());
    assert.equal(end, 124);
    assert.deepEqual(
      entries.map((e) => e.name),
      ["TRAILER!!!"],
    );
    assert.equal(entries[0]?.mode, 0);
    assert.equal(entries[0]?.ino, 0);
  });

  test("every entry keeps its order, type, permissions and numbering", () => {
    const buffer = sample().toBuffer();
    const { entries, end } = readNewc(buffer);
    assert.equal(end, buffer.length, "nothing after the trailer");
    assert.deepEqual(
      entries.map((e) => [e.name, e.ino, e.mode.toString(8), e.nlink, e.filesize, e.rdevMajor, e.rdevMinor]),
      [
        ["bin", 1, "40755", 2, 0, 0, 0],
        ["bin/hello", 2, "100755", 1, 3, 0, 0],
        ["bin/sh", 3, "120777", 1, 5, 0, 0],
        ["dev", 4, "40755", 2, 0, 0, 0],
        ["dev/console", 5, "20600", 1, 0, 5, 1],
        ["dev/null", 6, "20666", 1, 0, 1, 3],
        ["etc", 7, "40700", 2, 0, 0, 0],
        ["etc/empty", 8, "100644", 1, 0, 0, 0],
        ["etc/four", 9, "100600", 1, 4, 0, 0],
        ["TRAILER!!!", 0, "0", 1, 0, 0, 0],
      ],
    );
  });

  test("owners, times, device and checksum fields are zero", () => {
    for (const entry of readNewc(sample().toBuffer()).entries) {
      assert.deepEqual([entry.uid, entry.gid, entry.mtime, entry.devMajor, entry.devMinor, entry.check], [0, 0, 0, 0, 0, 0], entry.name);
    }
  });

  test("file data and symlink targets are stored as the entry's data", () => {
    const { entries } = readNewc(sample().toBuffer());
    const byName = new Map(entries.map((e) => [e.name, e]));
    assert.equal(byName.get("bin/hello")?.data.toString(), "hi\n");
    assert.equal(byName.get("bin/sh")?.data.toString(), "hello");
    assert.equal(byName.get("etc/four")?.data.toString(), "1234");
    assert.equal(byName.get("etc/empty")?.data.length, 0);
  });

  test("names and data of every length mod 4 are padded to 4 bytes", () => {
    const archive = new CpioArchive();
    for (let n = 1; n <= 8; n++) archive.file("f".repeat(n), "d".repeat(n));
    const buffer = archive.toBuffer();
    const { entries } = readNewc(buffer);
    assert.equal(buffer.length % 4, 0);
    for (const entry of entries) {
      assert.equal(entry.offset % 4, 0);
      assert.equal(entry.dataOffset % 4, 0);
      assert.equal(entry.namesize, entry.name.length + 1);
    }
    assert.deepEqual(
      entries.slice(0, 8).map((e) => e.data.toString()),
      ["d", "dd", "ddd", "dddd", "ddddd", "dddddd", "ddddddd", "dddddddd"],
    );
  });

  test("binary data is stored byte for byte", () => {
    const data = randomBytes(70_001);
    const { entries } = readNewc(new CpioArchive().file("blob", data).toBuffer());
    assert.deepEqual(entries[0]?.data, data);
    assert.equal(entries[0]?.filesize, 70_001);
  });

  test("names are stored as UTF-8 and namesize counts bytes", () => {
    const { entries } = readNewc(new CpioArchive().file("café", "x").toBuffer());
    assert.equal(entries[0]?.name, "café");
    assert.equal(entries[0]?.namesize, 6);
  });

  test("leading slashes are dropped from names", () => {
    const { entries } = readNewc(new CpioArchive().directory("/etc").file("//etc/hosts", "").toBuffer());
    assert.deepEqual(
      entries.map((e) => e.name),
      ["etc", "etc/hosts", "TRAILER!!!"],
    );
  });

  test("toBuffer can be called again and gives the same bytes", () => {
    const archive = sample();
    assert.deepEqual(archive.toBuffer(), archive.toBuffer());
  });
});

describe("CpioArchive names", () => {
  test("a duplicate name is rejected", () => {
    const archive = new CpioArchive().file("a", "1");
    assert.throws(() => archive.file("a", "2"), { message: 'Duplicate cpio entry "a"' });
    assert.throws(() => archive.directory("a"), { message: 'Duplicate cpio entry "a"' });
  });

  test("a duplicate after dropping leading slashes is rejected", () => {
    const archive = new CpioArchive().directory("bin");
    assert.throws(() => archive.symlink("/bin", "x"), { message: 'Duplicate cpio entry "bin"' });
  });

  test("a rejected duplicate does not change the archive", () => {
    const archive = new CpioArchive().file("a", "1");
    assert.throws(() => archive.file("a", "2"));
    const { entries } = readNewc(archive.toBuffer());
    assert.deepEqual(
      entries.map((e) => [e.name, e.data.toString()]),
      [
        ["a", "1"],
        ["TRAILER!!!", ""],
      ],
    );
  });

  test("'..' components are rejected, quoting the name as given", () => {
    const archive = new CpioArchive();
    for (const name of ["..", "../x", "a/../b", "a/..", "/../etc/passwd", "x/../../y"]) {
      assert.throws(() => archive.file(name, "x"), { message: `Invalid cpio entry name ${JSON.stringify(name)}` }, name);
    }
    assert.throws(() => archive.directory(".."), { message: 'Invalid cpio entry name ".."' });
    assert.throws(() => archive.symlink("../l", "t"), { message: 'Invalid cpio entry name "../l"' });
    assert.throws(() => archive.characterDevice("dev/../console", 5, 1), { message: 'Invalid cpio entry name "dev/../console"' });
  });

  test("empty names and names of only slashes are rejected", () => {
    const archive = new CpioArchive();
    assert.throws(() => archive.file("", "x"), { message: 'Invalid cpio entry name ""' });
    assert.throws(() => archive.directory("/"), { message: 'Invalid cpio entry name "/"' });
    assert.throws(() => archive.directory("///"), { message: 'Invalid cpio entry name "///"' });
  });

  test("dots that are not a '..' component are fine", () => {
    const archive = new CpioArchive().file("a..b", "").file("...", "").file(".hidden", "").file("x/..y", "");
    assert.deepEqual(
      readNewc(archive.toBuffer()).entries.map((e) => e.name),
      ["a..b", "...", ".hidden", "x/..y", "TRAILER!!!"],
    );
  });
});

describe("CpioArchive read by GNU cpio", () => {
  let dir = "";
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-cpio-test-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("cpio -i -t -v lists every entry with its type, mode, owner, size and device numbers", () => {
    const result = cpio(["-i", "-t", "-v"], sample().toBuffer());
    assert.equal(result.status, 0, result.stderr);
    assert.equal(
      result.stdout,
      [
        "drwxr-xr-x   2 root     root            0 Jan  1  1970 bin",
        "-rwxr-xr-x   1 root     root            3 Jan  1  1970 bin/hello",
        "lrwxrwxrwx   1 root     root            5 Jan  1  1970 bin/sh -> hello",
        "drwxr-xr-x   2 root     root            0 Jan  1  1970 dev",
        "crw-------   1 root     root       5,   1 Jan  1  1970 dev/console",
        "crw-rw-rw-   1 root     root       1,   3 Jan  1  1970 dev/null",
        "drwx------   2 root     root            0 Jan  1  1970 etc",
        "-rw-r--r--   1 root     root            0 Jan  1  1970 etc/empty",
        "-rw-------   1 root     root            4 Jan  1  1970 etc/four",
        "",
      ].join("\n"),
    );
    // The archive is 5 blocks of 512 bytes or fewer: GNU cpio reports how many it read.
    assert.match(result.stderr, /^\d+ blocks?\n$/);
  });

  test("cpio -idm extracts files, directories and symlinks with their contents and modes", async () => {
    const blob = randomBytes(100_003);
    const archive = new CpioArchive()
      .directory("bin")
      .file("bin/busybox", blob, 0o755)
      .symlink("bin/sh", "busybox")
      .directory("etc", 0o750)
      .file("etc/hostname", "sbox-1\n", 0o640)
      .file("etc/empty", "")
      .directory("lib")
      .directory("lib/modules")
      .file("lib/modules/virtio_blk.ko", "\0modinfo\0", 0o644);
    const out = join(dir, "extract");
    await mkdir(out);
    const result = cpio(["-i", "-d", "-m", "--no-absolute-filenames", "--quiet"], archive.toBuffer(), out);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stderr, "");

    assert.deepEqual(await readFile(join(out, "bin/busybox")), blob);
    assert.equal(await readFile(join(out, "etc/hostname"), "utf8"), "sbox-1\n");
    assert.equal((await readFile(join(out, "etc/empty"))).length, 0);
    assert.equal(await readFile(join(out, "lib/modules/virtio_blk.ko"), "latin1"), "\0modinfo\0");
    assert.equal(await readlink(join(out, "bin/sh")), "busybox");

    const modeOf = async (p: string): Promise<string> => ((await lstat(join(out, p))).mode & 0o170777).toString(8);
    assert.equal(await modeOf("bin"), "40755");
    assert.equal(await modeOf("bin/busybox"), "100755");
    assert.equal(await modeOf("bin/sh"), "120777");
    assert.equal(await modeOf("etc"), "40750");
    assert.equal(await modeOf("etc/hostname"), "100640");
    assert.equal(await modeOf("etc/empty"), "100644");
    assert.equal((await lstat(join(out, "etc/hostname"))).mtimeMs, 0, "-m keeps the archive's mtime of 0");
  });
});
