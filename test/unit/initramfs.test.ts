import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildInitramfs, initramfsInit } from "../../src/image/initramfs.ts";
import type { KernelModule } from "../../src/image/kernel-modules.ts";

interface Entry {
  name: string;
  mode: number;
  rdevMajor: number;
  rdevMinor: number;
  data: Buffer;
}

/** A minimal newc reader: enough to list what buildInitramfs put in. */
function readNewc(buffer: Buffer): Entry[] {
  const entries: Entry[] = [];
  let offset = 0;
  for (;;) {
    assert.equal(buffer.toString("ascii", offset, offset + 6), "070701");
    const field = (i: number): number => parseInt(buffer.toString("ascii", offset + 6 + i * 8, offset + 14 + i * 8), 16);
    const namesize = field(11);
    const filesize = field(6);
    const name = buffer.toString("utf8", offset + 110, offset + 110 + namesize - 1);
    const dataOffset = Math.ceil((offset + 110 + namesize) / 4) * 4;
    entries.push({ name, mode: field(1), rdevMajor: field(9), rdevMinor: field(10), data: buffer.subarray(dataOffset, dataOffset + filesize) });
    offset = Math.ceil((dataOffset + filesize) / 4) * 4;
    if (name === "TRAILER!!!") {
      assert.equal(offset, buffer.length);
      return entries;
    }
  }
}

/**
 * Runs the init script under the host's /bin/sh with busybox replaced by a shell function that logs its
 * calls, so the script's own logic (module order, command-line parsing, failure paths) runs for real.
 */
function runInit(modules: readonly string[], cmdline: string): { status: number | null; lines: string[] } {
  const script = initramfsInit(modules);
  assert.ok(script.includes("\nbb=/bin/busybox\n"));
  const fake = `fakebb() {
  case "$1" in
    cat) printf '%s\\n' "$CORRAL_TEST_CMDLINE" ;;
    insmod) echo "insmod $2"; [ "$2" != /lib/modules/broken.ko ] ;;
    usleep) : ;;
    poweroff) echo "poweroff $2"; exit 0 ;;
    *) echo "$*" ;;
  esac
}
bb=fakebb
`;
  const result = spawnSync("sh", ["-c", script.replace("bb=/bin/busybox\n", fake)], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", CORRAL_TEST_CMDLINE: cmdline },
    encoding: "utf8",
    timeout: 30_000,
  });
  if (result.error) throw result.error;
  assert.equal(result.stderr, "");
  return { status: result.status, lines: result.stdout.split("\n").filter((l) => l.length > 0) };
}

const EARLY_MOUNTS = ["mount -t proc proc /proc", "mount -t sysfs sysfs /sys", "mount -t devtmpfs devtmpfs /dev"];

describe("initramfsInit", () => {
  test("the script is pinned for two modules", () => {
    assert.equal(
      initramfsInit(["virtio_mmio", "virtio_blk"]),
      `#!/bin/busybox sh
# Corral initramfs: load the virtio drivers, mount the root disk, hand over to its init: the program the
# guest runtime named in /opt/corral/pid1 (Corral's init, or the image's systemd), else /sbin/init.
bb=/bin/busybox
fail() { echo "corral-init: $*"; $bb sync; $bb poweroff -f; }
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
for m in virtio_mmio virtio_blk; do
  $bb insmod /lib/modules/$m.ko || echo "corral-init: cannot load module $m"
done
cmdline=$($bb cat /proc/cmdline)
root=/dev/vda
for arg in $cmdline; do
  case "$arg" in
    corral.probe) echo "CORRAL_PROBE_OK"; $bb poweroff -f ;;
    root=*) root="\${arg#root=}" ;;
  esac
done
tries=0
while [ ! -b "$root" ]; do
  tries=$((tries + 1))
  [ $tries -gt 1000 ] && fail "root disk $root did not appear"
  $bb usleep 10000
done
$bb mount -t ext4 -o rw,noatime "$root" /newroot || fail "cannot mount root disk $root"
init=/sbin/init
[ -f /newroot/opt/corral/pid1 ] && init=$($bb head -n 1 /newroot/opt/corral/pid1)
[ -x "/newroot$init" ] || fail "the root disk has no $init"
$bb mount --move /dev /newroot/dev
$bb umount /sys
$bb umount /proc
exec $bb switch_root /newroot "$init"
`,
    );
  });

  test("modules appear in the loop in the order given", () => {
    assert.ok(initramfsInit(["c", "a", "b"]).includes("\nfor m in c a b; do\n"));
    assert.ok(initramfsInit(["b", "a"]).includes("\nfor m in b a; do\n"));
  });

  test("the default root disk is /dev/vda", () => {
    assert.ok(initramfsInit([]).includes("\nroot=/dev/vda\n"));
  });

  test("runs: loads the modules in the given order and goes on past one that fails", () => {
    const { status, lines } = runInit(["virtio_mmio", "broken", "virtio_blk", "virtio_net"], "console=ttyS0 corral.probe");
    assert.equal(status, 0);
    assert.deepEqual(lines, [
      ...EARLY_MOUNTS,
      "insmod /lib/modules/virtio_mmio.ko",
      "insmod /lib/modules/broken.ko",
      "corral-init: cannot load module broken",
      "insmod /lib/modules/virtio_blk.ko",
      "insmod /lib/modules/virtio_net.ko",
      "CORRAL_PROBE_OK",
      "poweroff -f",
    ]);
  });

  test("runs: the probe argument prints the marker and powers off before looking for the root disk", () => {
    const { lines } = runInit(["virtio_blk"], "console=ttyS0 reboot=k corral.probe root=/dev/vdz quiet");
    assert.deepEqual(lines.slice(-2), ["CORRAL_PROBE_OK", "poweroff -f"]);
    assert.equal(lines.filter((l) => l.includes("vdz")).length, 0);
  });

  test("runs: only the exact probe word counts", () => {
    const dir = "/nonexistent-corral-test";
    for (const word of ["corral.probe=1", "xcorral.probe", "corral.prob"]) {
      const { lines } = runInit([], `${word} root=${dir}/disk`);
      assert.ok(!lines.includes("CORRAL_PROBE_OK"), word);
      assert.deepEqual(lines.slice(-3), [`corral-init: root disk ${dir}/disk did not appear`, "sync", "poweroff -f"], word);
    }
  });

  test("runs: root= on the command line picks the disk, the last one winning", () => {
    const { lines } = runInit([], "console=ttyS0 root=/nonexistent/vdb quiet");
    assert.deepEqual(lines.slice(-3), ["corral-init: root disk /nonexistent/vdb did not appear", "sync", "poweroff -f"]);
    const last = runInit([], "root=/nonexistent/first root=/nonexistent/second");
    assert.equal(last.lines.at(-3), "corral-init: root disk /nonexistent/second did not appear");
  });

  test("runs: a root= value keeps everything after the first '='", () => {
    const { lines } = runInit([], "root=/nonexistent/a=b");
    assert.equal(lines.at(-3), "corral-init: root disk /nonexistent/a=b did not appear");
  });

  test("runs: an argument merely containing root= does not change the disk", () => {
    const { lines } = runInit([], "xroot=/nonexistent/other root=/nonexistent/mine");
    assert.equal(lines.at(-3), "corral-init: root disk /nonexistent/mine did not appear");
  });

  test("runs: with no modules the loop loads nothing", () => {
    const { lines } = runInit([], "corral.probe");
    assert.deepEqual(lines, [...EARLY_MOUNTS, "CORRAL_PROBE_OK", "poweroff -f"]);
  });
});

describe("buildInitramfs", () => {
  let dir = "";
  let busybox = "";
  let modules: KernelModule[] = [];
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-initramfs-test-"));
    busybox = join(dir, "busybox");
    await writeFile(busybox, Buffer.from("\x7fELF fake busybox\n", "latin1"));
    modules = [];
    for (const name of ["virtio_mmio", "virtio_blk", "virtio_rng"]) {
      const path = join(dir, `${name.replace("_", "-")}.ko`);
      await writeFile(path, `\0name=${name}\0module ${name}`);
      modules.push({ name, path, depends: [] });
    }
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("the archive holds exactly the directories, devices, busybox, modules and init, in order", async () => {
    const entries = readNewc(await buildInitramfs({ busyboxPath: busybox, modules }));
    assert.deepEqual(
      entries.map((e) => [e.name, e.mode.toString(8), e.rdevMajor, e.rdevMinor]),
      [
        ["bin", "40755", 0, 0],
        ["dev", "40755", 0, 0],
        ["proc", "40755", 0, 0],
        ["sys", "40755", 0, 0],
        ["newroot", "40755", 0, 0],
        ["lib", "40755", 0, 0],
        ["lib/modules", "40755", 0, 0],
        ["dev/console", "20600", 5, 1],
        ["dev/null", "20666", 1, 3],
        ["bin/busybox", "100755", 0, 0],
        ["bin/sh", "120777", 0, 0],
        ["lib/modules/virtio_mmio.ko", "100644", 0, 0],
        ["lib/modules/virtio_blk.ko", "100644", 0, 0],
        ["lib/modules/virtio_rng.ko", "100644", 0, 0],
        ["init", "100755", 0, 0],
        ["TRAILER!!!", "0", 0, 0],
      ],
    );
  });

  test("file contents come from the given paths, init from initramfsInit", async () => {
    const entries = readNewc(await buildInitramfs({ busyboxPath: busybox, modules }));
    const data = (name: string): string | undefined => entries.find((e) => e.name === name)?.data.toString("latin1");
    assert.equal(data("bin/busybox"), "\x7fELF fake busybox\n");
    assert.equal(data("bin/sh"), "busybox");
    assert.equal(data("lib/modules/virtio_blk.ko"), "\0name=virtio_blk\0module virtio_blk");
    assert.equal(data("lib/modules/virtio_rng.ko"), "\0name=virtio_rng\0module virtio_rng");
    assert.equal(data("init"), initramfsInit(["virtio_mmio", "virtio_blk", "virtio_rng"]));
  });

  test("modules are named by their module name, not their file name", async () => {
    const entries = readNewc(await buildInitramfs({ busyboxPath: busybox, modules }));
    assert.equal(entries.filter((e) => e.name.includes("virtio-")).length, 0);
  });

  test("without modules the archive still boots to a script with an empty module loop", async () => {
    const entries = readNewc(await buildInitramfs({ busyboxPath: busybox, modules: [] }));
    assert.deepEqual(
      entries.filter((e) => e.name.startsWith("lib/modules/")).map((e) => e.name),
      [],
    );
    assert.ok(
      entries
        .find((e) => e.name === "init")
        ?.data.toString()
        .includes("\nfor m in ; do\n"),
    );
  });

  test("GNU cpio lists the archive", async () => {
    const buffer = await buildInitramfs({ busyboxPath: busybox, modules: modules.slice(0, 1) });
    const result = spawnSync("cpio", ["-i", "-t", "-v"], { input: buffer, env: { ...process.env, TZ: "UTC", LC_ALL: "C" }, encoding: "utf8" });
    assert.equal(result.status, 0, result.stderr);
    const initSize = Buffer.byteLength(initramfsInit(["virtio_mmio"]));
    assert.equal(
      result.stdout,
      [
        "drwxr-xr-x   2 root     root            0 Jan  1  1970 bin",
        "drwxr-xr-x   2 root     root            0 Jan  1  1970 dev",
        "drwxr-xr-x   2 root     root            0 Jan  1  1970 proc",
        "drwxr-xr-x   2 root     root            0 Jan  1  1970 sys",
        "drwxr-xr-x   2 root     root            0 Jan  1  1970 newroot",
        "drwxr-xr-x   2 root     root            0 Jan  1  1970 lib",
        "drwxr-xr-x   2 root     root            0 Jan  1  1970 lib/modules",
        "crw-------   1 root     root       5,   1 Jan  1  1970 dev/console",
        "crw-rw-rw-   1 root     root       1,   3 Jan  1  1970 dev/null",
        "-rwxr-xr-x   1 root     root           18 Jan  1  1970 bin/busybox",
        "lrwxrwxrwx   1 root     root            7 Jan  1  1970 bin/sh -> busybox",
        `-rw-r--r--   1 root     root           ${String(Buffer.byteLength("\0name=virtio_mmio\0module virtio_mmio")).padStart(2)} Jan  1  1970 lib/modules/virtio_mmio.ko`,
        `-rwxr-xr-x   1 root     root         ${String(initSize).padStart(4)} Jan  1  1970 init`,
        "",
      ].join("\n"),
    );
  });

  test("a missing busybox rejects with the file system error", async () => {
    const missing = join(dir, "no-busybox");
    await assert.rejects(buildInitramfs({ busyboxPath: missing, modules }), { code: "ENOENT", path: missing });
  });

  test("a missing module file rejects with the file system error", async () => {
    const missing = join(dir, "gone.ko");
    await assert.rejects(buildInitramfs({ busyboxPath: busybox, modules: [{ name: "gone", path: missing, depends: [] }] }), { code: "ENOENT", path: missing });
  });

  test("the same module twice is rejected as a duplicate entry", async () => {
    const first = modules[0] as KernelModule;
    await assert.rejects(buildInitramfs({ busyboxPath: busybox, modules: [first, first] }), { message: 'Duplicate cpio entry "lib/modules/virtio_mmio.ko"' });
  });
});
