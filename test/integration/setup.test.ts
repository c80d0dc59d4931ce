// The set-up step is idempotent, images are immutable, and the accelerator choice is reasoned and cached.
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { resolveAccel } from "../../src/engine/index.ts";
import { corralHome, ensureBaseImage, ImageStore, type Progress } from "../../src/image/index.ts";

function recorder(): Progress & { lines: string[] } {
  const lines: string[] = [];
  return { lines, step: (m) => lines.push(`step ${m}`), skip: (m) => lines.push(`skip ${m}`), done: (m) => lines.push(`done ${m}`) };
}

describe("set-up", { timeout: 300_000 }, () => {
  const home = corralHome();
  const scratch: string[] = [];

  after(async () => {
    for (const dir of scratch) await rm(dir, { recursive: true, force: true });
  });

  test("a second run does nothing: the kernel and the image are reported up to date", async () => {
    const first = await ensureBaseImage(home, recorder());
    const versionsBefore = await readdir(join(home.images, "base", "versions"));
    const progress = recorder();
    const second = await ensureBaseImage(home, progress);
    assert.equal(second.version, first.version);
    assert.deepEqual(await readdir(join(home.images, "base", "versions")), versionsBefore, "no new version was built");
    assert.deepEqual(
      progress.lines.map((l) => l.split(" ")[0]),
      ["skip", "skip"],
    );
    assert.match(progress.lines[0] ?? "", /^skip kernel \S+-cloud-amd64 is installed$/);
    assert.match(progress.lines[1] ?? "", new RegExp(`^skip image "base" ${first.version} is up to date$`));
  });

  test("the image's kernel, initramfs and root filesystem are read-only on the host", async () => {
    const image = await new ImageStore(home.images).resolve("base");
    for (const file of [image.kernel, image.initrd, image.rootfs]) assert.equal(statSync(file).mode & 0o222, 0, `${file} is not writable`);
    assert.equal(image.manifest.rootfs_format, "raw");
    assert.equal(image.manifest.inputs.node_version, process.version, "the guest runs the host's own node");
  });

  test("an unknown image is image_not_found with a hint", async () => {
    await assert.rejects(new ImageStore(home.images).resolve("nope"), { code: "image_not_found", message: /corral image build/ });
    await assert.rejects(new ImageStore(home.images).resolve("../etc"), { code: "invalid_name" });
  });

  test("accel auto probes KVM by booting the real kernel, says why, and caches the verdict", async () => {
    const image = await new ImageStore(home.images).resolve("base");
    const dir = await mkdtemp(join(tmpdir(), "corral-accel-"));
    scratch.push(dir);
    const input = { qemuBinary: "/usr/bin/qemu-system-x86_64", kernel: image.kernel, initrd: image.initrd, cacheFile: join(dir, "accel.json"), deadlineMs: 5000 };
    const first = await resolveAccel("auto", input);
    assert.match(first.accel, /^(kvm|tcg)$/);
    assert.equal(first.cached, false);
    if (first.accel === "tcg") assert.match(first.reason, /falling back to TCG|not accessible/);
    else assert.match(first.reason, /KVM booted the guest kernel/);
    const second = await resolveAccel("auto", input);
    assert.equal(second.cached, true);
    assert.equal(second.accel, first.accel);
    const forced = await resolveAccel("tcg", input);
    assert.deepEqual([forced.accel, forced.cached], ["tcg", false]);
    assert.match(forced.reason, /chosen by the configuration/);
  });
});
