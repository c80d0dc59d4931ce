// The real libvirt daemon for tests: started (`virtlogd -d`, `libvirtd -d`) when `virsh -c qemu:///system`
// cannot reach one, and small test domains named `corral-t-<random>`: Corral's guest kernel booted directly
// (`type='qemu'`, software emulation), a busybox initramfs written here whose only job is to power the machine
// off when ACPI's power button is pressed (so that libvirt's shutdown and reboot have a guest that answers
// them) and to say on its serial port, a file, each time it has booted. A 64 MiB qcow2 disk and a user-mode
// NIC (slirp: no host device, no traffic) give the domain hardware to read. Every domain is undefined and its
// files removed by `remove()`.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, chown, copyFile, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { corralHome } from "../../src/image/home.ts";
import { CpioArchive } from "../../src/image/cpio.ts";
import { findInstalledKernel } from "../../src/image/kernel.ts";
import { until } from "./until.ts";

const exec = promisify(execFile);

export const SYSTEM_URI = "qemu:///system";
/** What the test guest prints on its serial port once per boot, when its power button is being listened to. */
export const GUEST_READY = "corral-test-guest: waiting for the power button";
/** The MAC of every test domain's NIC. */
export const TEST_MAC = "52:54:00:c0:11:a1";
export const TEST_DISK_MIB = 64;

/** `virsh -c URI --quiet ARGS`: its stdout (a failure throws with virsh's stderr). */
export async function virsh(args: string[], uri = SYSTEM_URI): Promise<string> {
  return (await exec("virsh", ["-c", uri, "--quiet", ...args], { timeout: 120_000, env: { ...process.env, LC_ALL: "C" } })).stdout;
}

/**
 * A libvirt daemon that answers on qemu:///system: the one running, or one started here. The first `define`
 * after libvirtd's first start probes QEMU's capabilities (~45 s once, then cached in /var/cache/libvirt).
 */
export async function ensureLibvirtd(): Promise<void> {
  await letQemuUserOpenKvm();
  if (await answers()) return;
  await exec("virtlogd", ["-d"]).catch(() => undefined);
  await exec("libvirtd", ["-d"]);
  await until(async () => ((await answers()) ? true : undefined), "libvirtd to answer on qemu:///system", 120_000, 250);
}

/**
 * /dev/kvm as Debian's udev rule leaves it (root:kvm, 0660; libvirt's QEMU user is in group kvm). Where no
 * udev ran (a container: root:root 0600) libvirt probes QEMU as root and finds KVM, then checks as its QEMU
 * user, finds it not usable and throws its capability cache away: every `virsh define` then re-probes QEMU
 * (~32 s here, measured with libvirtd's debug log: "KVM was enabled when probing ..., but it is not available
 * now"). The device's owner and mode only change where the group exists and the group has no access yet.
 */
async function letQemuUserOpenKvm(): Promise<void> {
  const info = await stat("/dev/kvm").catch(() => undefined);
  if (!info || (info.mode & 0o060) === 0o060) return;
  const kvm = await exec("getent", ["group", "kvm"]).then(
    (r) => Number(r.stdout.split(":")[2]),
    () => undefined,
  );
  if (kvm === undefined || !Number.isInteger(kvm)) return;
  await chown("/dev/kvm", info.uid, kvm);
  await chmod("/dev/kvm", (info.mode & 0o777) | 0o060);
}

async function answers(): Promise<boolean> {
  return virsh(["version"]).then(
    () => true,
    () => false,
  );
}

export interface TestDomain {
  name: string;
  dir: string;
  disk: string;
  serialLog: string;
  /** How many times the guest has booted far enough to listen to its power button (from its serial log). */
  boots(): Promise<number>;
  /** Waits until the guest has booted `count` times and listens to its power button. */
  waitForBoots(count: number, timeoutMs?: number): Promise<void>;
  /** libvirt's state name (`virsh domstate`). */
  state(): Promise<string>;
  remove(): Promise<void>;
}

/** The guest's /init: mount what it needs, load the power button's modules, power off when it is pressed. */
const GUEST_INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
insmod /lib/evdev.ko
insmod /lib/button.ko
echo "corral-test-guest: up"
button=""
while [ -z "$button" ]; do
  for dev in /sys/class/input/event*; do
    if grep -q "Power Button" "$dev/device/name" 2>/dev/null; then button="/dev/input/\${dev##*/}"; fi
  done
  [ -n "$button" ] || sleep 1
done
echo "${GUEST_READY} ($button)"
# One input event (the press) is enough: power off, as an init system would.
dd if="$button" of=/dev/null bs=24 count=1 2>/dev/null
echo "corral-test-guest: powering off"
poweroff -f
sleep 60
`;

/** The domain's XML: direct kernel boot, TCG, one vCPU, `memoryMiB`, a qcow2 disk, a user-mode NIC, serial to a file. */
export function testDomainXml(spec: { name: string; kernel: string; initrd: string; disk: string; serialLog: string; memoryMiB: number }): string {
  return `<domain type='qemu'>
  <name>${spec.name}</name>
  <memory unit='MiB'>${spec.memoryMiB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${spec.kernel}</kernel>
    <initrd>${spec.initrd}</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='${spec.disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='user'>
      <mac address='${TEST_MAC}'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'>
      <source path='${spec.serialLog}' append='on'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>
`;
}

/** Defines a test domain (started when `start`); remove() undefines it and deletes its files. */
export async function defineTestDomain(options: { start?: boolean; memoryMiB?: number } = {}): Promise<TestDomain> {
  const kernel = await findInstalledKernel(corralHome());
  if (kernel === undefined) throw new Error("No guest kernel under CORRAL_HOME: run the test set-up first");
  const name = `corral-t-${randomBytes(4).toString("hex")}`;
  const dir = await mkdtemp(join(tmpdir(), `${name}-`));
  // libvirt runs QEMU as libvirt-qemu: it must reach the files (it relabels the files, not their directory).
  await chmod(dir, 0o755);
  const vmlinuz = join(dir, "vmlinuz");
  const initrd = join(dir, "initrd.cpio");
  const disk = join(dir, "disk.qcow2");
  const serialLog = join(dir, "serial.log");
  await copyFile(kernel.vmlinuz, vmlinuz);
  const modules = join(kernel.modulesDir, "kernel", "drivers");
  const archive = new CpioArchive()
    .directory("bin")
    .directory("lib")
    .file("bin/busybox", await readFile("/usr/bin/busybox"), 0o755)
    .file("lib/evdev.ko", await readFile(join(modules, "input", "evdev.ko")))
    .file("lib/button.ko", await readFile(join(modules, "acpi", "button.ko")))
    .file("init", GUEST_INIT, 0o755);
  await writeFile(initrd, archive.toBuffer());
  await exec("qemu-img", ["create", "-q", "-f", "qcow2", disk, `${TEST_DISK_MIB}M`]);
  const xmlFile = join(dir, "domain.xml");
  await writeFile(xmlFile, testDomainXml({ name, kernel: vmlinuz, initrd, disk, serialLog, memoryMiB: options.memoryMiB ?? 128 }));
  await virsh(["define", "--file", xmlFile]);
  const domain: TestDomain = {
    name,
    dir,
    disk,
    serialLog,
    boots: async () => (await readFile(serialLog, "utf8").catch(() => "")).split(GUEST_READY).length - 1,
    waitForBoots: async (count, timeoutMs = 180_000) => {
      await until(async () => ((await domain.boots()) >= count ? true : undefined), `${name} to boot ${count} time(s) (serial log ${serialLog})`, timeoutMs, 250);
    },
    state: async () => (await virsh(["domstate", "--domain", name])).trim(),
    remove: async () => {
      // Other tests stop libvirtd for a while (a host going offline): keep asking until the domain is gone.
      await until(
        async () => {
          await virsh(["destroy", "--domain", name]).catch(() => undefined);
          return virsh(["undefine", "--domain", name]).then(
            () => true,
            (err: Error & { stderr?: string }) => (/failed to get domain|Domain not found/.test(err.stderr ?? "") ? true : undefined),
          );
        },
        `${name} to be undefined`,
        120_000,
        1_000,
      );
      await rm(dir, { recursive: true, force: true });
    },
  };
  if (options.start) await virsh(["start", "--domain", name]);
  return domain;
}
