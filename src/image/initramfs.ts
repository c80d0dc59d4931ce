// The initramfs every image boots through: static busybox, the virtio modules in dependency order, and an
// init that mounts the root disk and switches to it. With `corral.probe` on the kernel command line it only
// prints a marker and powers off: that is how the acceleration probe knows a kernel really booted.
import { readFile } from "node:fs/promises";
import { PROBE_ARGUMENT, PROBE_MARKER } from "../protocol/boot.ts";
import { CpioArchive } from "./cpio.ts";
import { PID1_FILE } from "./guest-runtime-scripts.ts";
import type { KernelModule } from "./kernel-modules.ts";

/** The initramfs /init script; pure so tests can pin it. */
export function initramfsInit(moduleNames: readonly string[]): string {
  return `#!/bin/busybox sh
# Corral initramfs: load the virtio drivers, mount the root disk, hand over to its init: the program the
# guest runtime named in ${PID1_FILE} (Corral's init, or the image's systemd), else /sbin/init.
bb=/bin/busybox
fail() { echo "corral-init: $*"; $bb sync; $bb poweroff -f; }
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev
for m in ${moduleNames.join(" ")}; do
  $bb insmod /lib/modules/$m.ko || echo "corral-init: cannot load module $m"
done
cmdline=$($bb cat /proc/cmdline)
root=/dev/vda
for arg in $cmdline; do
  case "$arg" in
    ${PROBE_ARGUMENT}) echo "${PROBE_MARKER}"; $bb poweroff -f ;;
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
[ -f /newroot${PID1_FILE} ] && init=$($bb head -n 1 /newroot${PID1_FILE})
[ -x "/newroot$init" ] || fail "the root disk has no $init"
$bb mount --move /dev /newroot/dev
$bb umount /sys
$bb umount /proc
exec $bb switch_root /newroot "$init"
`;
}

export interface InitramfsInput {
  busyboxPath: string;
  modules: readonly KernelModule[];
}

/** Builds the uncompressed archive: a few MiB that the kernel unpacks faster than it would inflate gzip. */
export async function buildInitramfs(input: InitramfsInput): Promise<Buffer> {
  const archive = new CpioArchive();
  for (const dir of ["bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"]) archive.directory(dir);
  archive.characterDevice("dev/console", 5, 1, 0o600);
  archive.characterDevice("dev/null", 1, 3, 0o666);
  archive.file("bin/busybox", await readFile(input.busyboxPath), 0o755);
  archive.symlink("bin/sh", "busybox");
  for (const module of input.modules) archive.file(`lib/modules/${module.name}.ko`, await readFile(module.path), 0o644);
  archive.file("init", initramfsInit(input.modules.map((m) => m.name)), 0o755);
  return archive.toBuffer();
}
