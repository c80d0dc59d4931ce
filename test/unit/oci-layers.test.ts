// OCI layers applied onto a staged root: whiteouts and opaque directories as a container runtime applies
// them, and hostile layers (absolute names, "..", symlinks that point out and are then written through, hard
// links out, device nodes) that must never write outside the root. Also registry references.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, lstatSync, readFileSync, readlinkSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { after, before, describe, test } from "node:test";
import { UnsafeEntryError } from "../../src/archive/index.ts";
import { applyLayer, MalformedLayerError } from "../../src/image/oci/apply-layer.ts";
import { imageConfigFromOci } from "../../src/image/oci/oci-config.ts";
import { parseReference } from "../../src/image/oci/reference.ts";
import { defaultImageName } from "../../src/image/oci/oci-imports.ts";
import { CorralError } from "../../src/protocol/errors.ts";
import { tarOf, type LayerEntry } from "../helpers/oci-fixtures.ts";

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), "corral-layers-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A fresh sandbox: ROOT (the image's root) beside OUTSIDE (what a layer must never touch). */
async function sandbox(name: string): Promise<{ root: string; outside: string }> {
  const dir = join(work, name);
  const root = join(dir, "root");
  const outside = join(dir, "outside");
  await mkdir(root, { recursive: true });
  await mkdir(outside, { recursive: true });
  await writeFile(join(outside, "victim"), "untouched\n");
  return { root, outside };
}

async function apply(root: string, entries: LayerEntry[], gzip = false): Promise<void> {
  const tar = await tarOf(entries);
  await applyLayer(Readable.from([gzip ? gzipSync(tar) : tar]), root);
}

describe("applying layers", () => {
  test("layers apply in order: whiteouts delete from lower layers, an opaque directory keeps only its own layer's entries", async () => {
    const { root } = await sandbox("order");
    await apply(root, [
      { name: "etc/", type: "directory" },
      { name: "etc/keep", body: "keep\n" },
      { name: "etc/gone", body: "gone\n" },
      { name: "etc/gone-dir/", type: "directory" },
      { name: "etc/gone-dir/file", body: "x" },
      { name: "data/old", body: "old\n" },
      { name: "data/sub/deep", body: "deep\n" },
      { name: "bin/busybox", body: "#!fake\n", mode: 0o755 },
      { name: "bin/sh", type: "symlink", linkname: "busybox" },
      { name: "bin/ash", type: "link", linkname: "bin/busybox" },
    ]);
    await apply(
      root,
      [
        { name: "etc/.wh.gone" },
        { name: "etc/.wh.gone-dir" },
        // Entries of the same layer before and after the marker both stay.
        { name: "data/new", body: "new\n" },
        { name: "data/.wh..wh..opq" },
        { name: "data/later", body: "later\n" },
        { name: "etc/keep", body: "replaced\n" },
        // AUFS' bookkeeping is skipped, not unpacked.
        { name: ".wh..wh.plnk/", type: "directory" },
        { name: ".wh..wh.plnk/1234.5678", body: "aufs" },
        { name: ".wh..wh.aufs" },
      ],
      true,
    );
    assert.equal(readFileSync(join(root, "etc/keep"), "utf8"), "replaced\n");
    assert.equal(existsSync(join(root, "etc/gone")), false);
    assert.equal(existsSync(join(root, "etc/gone-dir")), false);
    assert.deepEqual((await readdir(join(root, "data"))).sort(), ["later", "new"]);
    assert.equal(readlinkSync(join(root, "bin/sh")), "busybox");
    assert.equal(lstatSync(join(root, "bin/ash")).ino, lstatSync(join(root, "bin/busybox")).ino);
    assert.equal(lstatSync(join(root, "bin/busybox")).mode & 0o777, 0o755);
    // No whiteout file itself is ever written.
    assert.equal(existsSync(join(root, "etc/.wh.gone")), false);
    assert.equal(existsSync(join(root, "data/.wh..wh..opq")), false);
    assert.deepEqual(
      (await readdir(root)).filter((n) => n.startsWith(".wh.")),
      [],
    );
  });

  test("a file replaces a directory of a lower layer, and a directory a file", async () => {
    const { root } = await sandbox("replace");
    await apply(root, [
      { name: "a/b/c", body: "c" },
      { name: "f", body: "f" },
    ]);
    await apply(root, [
      { name: "a", body: "now a file" },
      { name: "f/", type: "directory" },
      { name: "f/inner", body: "i" },
    ]);
    assert.equal(readFileSync(join(root, "a"), "utf8"), "now a file");
    assert.equal(readFileSync(join(root, "f/inner"), "utf8"), "i");
  });

  test("a symlink to an absolute path resolves inside the root, as in the guest", async () => {
    const { root, outside } = await sandbox("chroot-link");
    await apply(root, [
      { name: "usr/lib/", type: "directory" },
      { name: "lib", type: "symlink", linkname: "/usr/lib" },
    ]);
    await apply(root, [{ name: "lib/libx.so", body: "lib" }]);
    assert.equal(readFileSync(join(root, "usr/lib/libx.so"), "utf8"), "lib");
    assert.deepEqual(await readdir(outside), ["victim"]);
  });

  for (const [label, entries] of [
    ["an absolute entry name", [{ name: "/outside/victim", body: "pwned" }]],
    ["a '..' entry name", [{ name: "../outside/victim", body: "pwned" }]],
    ["a hard link to '..'", [{ name: "x", type: "link", linkname: "../outside/victim" }]],
    ["a whiteout of '..'", [{ name: "etc/.wh.." }]],
  ] as Array<[string, LayerEntry[]]>) {
    test(`${label} is refused and nothing outside the root changes`, async () => {
      const { root, outside } = await sandbox(label.replace(/\W+/g, "-"));
      await assert.rejects(apply(root, entries), (err: unknown) => err instanceof UnsafeEntryError);
      assert.equal(readFileSync(join(outside, "victim"), "utf8"), "untouched\n");
    });
  }

  test("symlinks pointing out of the root and then written through stay inside it", async () => {
    const { root, outside } = await sandbox("escape");
    // Relative escapes, absolute ones, and chains: each resolves inside the root as a chroot would.
    await apply(root, [
      { name: "up", type: "symlink", linkname: "../../../../../../.." },
      { name: "abs", type: "symlink", linkname: outside },
      { name: "hop1", type: "symlink", linkname: "hop2" },
      { name: "hop2", type: "symlink", linkname: "/../../.." },
      { name: "victim-link", type: "symlink", linkname: join(outside, "victim") },
    ]);
    await apply(root, [
      { name: "up/outside/victim", body: "pwned" },
      { name: "abs/victim", body: "pwned" },
      { name: "hop1/victim", body: "pwned" },
      // Writing a file where a symlink is replaces the symlink; it never writes through it.
      { name: "victim-link", body: "pwned" },
      // A hard link through an escaping symlink links a file inside the root, if any.
      { name: "hard", type: "link", linkname: "abs/victim" },
    ]);
    assert.equal(readFileSync(join(outside, "victim"), "utf8"), "untouched\n");
    assert.deepEqual(await readdir(outside), ["victim"]);
    assert.equal(lstatSync(join(root, "victim-link")).isFile(), true);
    assert.equal(readFileSync(join(root, "hard"), "utf8"), "pwned");
    // The escapes landed inside the root.
    assert.equal(readFileSync(join(root, outside, "victim"), "utf8"), "pwned");
  });

  test("a whiteout through an escaping symlink deletes inside the root only", async () => {
    const { root, outside } = await sandbox("whiteout-escape");
    await apply(root, [{ name: "abs", type: "symlink", linkname: outside }]);
    await apply(root, [{ name: "abs/.wh.victim" }, { name: "abs/.wh..wh..opq" }]);
    assert.equal(readFileSync(join(outside, "victim"), "utf8"), "untouched\n");
  });

  test("device nodes and FIFOs are skipped", async () => {
    const { root } = await sandbox("devices");
    await apply(root, [
      { name: "dev/sda", type: "block-device", devmajor: 8, devminor: 0 },
      { name: "dev/mem", type: "character-device", devmajor: 1, devminor: 1 },
      { name: "dev/fifo", type: "fifo" },
      { name: "ok", body: "ok" },
    ]);
    assert.deepEqual(await readdir(join(root, "dev")), []);
    assert.equal(readFileSync(join(root, "ok"), "utf8"), "ok");
  });

  test("a layer that is not a tar, cut short, or zstd-compressed is a MalformedLayerError", async () => {
    const { root } = await sandbox("malformed");
    const tar = await tarOf([{ name: "big", body: randomBytes(100_000) }]);
    const cases: Buffer[] = [
      tar.subarray(0, 20_000),
      gzipSync(tar).subarray(0, 50_000),
      Buffer.from("not a tar at all, clearly, and long enough to be read as one ".repeat(20)),
      Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0]),
    ];
    for (const data of cases) {
      await assert.rejects(
        applyLayer(Readable.from([data]), root),
        (err: unknown) => err instanceof MalformedLayerError || err instanceof UnsafeEntryError,
        `${data.length} bytes`,
      );
    }
  });
});

describe("registry references", () => {
  test("references are spelt out in full, as Docker spells them", () => {
    assert.equal(parseReference("alpine").canonical, "docker.io/library/alpine:latest");
    assert.equal(parseReference("127.0.0.1:5000/team/tool:1.0").canonical, "127.0.0.1:5000/team/tool:1.0");
    assert.equal(parseReference("127.0.0.1:5000/team/tool:1.0").registry, "127.0.0.1:5000");
    assert.equal(parseReference("docker://localhost/x").canonical, "localhost/x:latest");
    const digest = `sha256:${"a".repeat(64)}`;
    assert.equal(parseReference(`quay.io/a/b@${digest}`).canonical, `quay.io/a/b@${digest}`);
  });

  test("malformed references are invalid_reference errors naming the reference", () => {
    for (const bad of ["", "UPPER/case", "a b", "host:5000/x:bad tag", "x@sha256:zz", "/leading", "a//b"]) {
      assert.throws(
        () => parseReference(bad),
        (err: unknown) => err instanceof CorralError && err.code === "invalid_reference" && err.message.includes(JSON.stringify(bad)),
        bad,
      );
    }
  });

  test("a pulled image's default name comes from the repository", () => {
    assert.equal(defaultImageName("library/alpine"), "alpine");
    assert.equal(defaultImageName("team/My_Tool"), "my_tool");
  });
});

test("OCI's config becomes the manifest's snake_case config", () => {
  assert.deepEqual(imageConfigFromOci({ config: { Env: ["A=1", "junk"], WorkingDir: "/w", User: "app", Entrypoint: ["/e"], Cmd: null, Labels: { k: "v" } } }), {
    env: ["A=1"],
    working_dir: "/w",
    user: "app",
    entrypoint: ["/e"],
    labels: { k: "v" },
  });
  assert.deepEqual(imageConfigFromOci({}), {});
});
