// The base image's root filesystem: busybox, tini as PID 1, the host's own node with the libraries ldd
// lists, and the bundled guest agent. Staged in a folder and turned into ext4 by `mkfs.ext4 -d`: no mounting,
// no loop devices.
import { copyFile, chmod, mkdir, symlink, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { requireProgram, run } from "../util/run.ts";

export const ROOTFS_SIZE = "4G";
export const AGENT_GUEST_PATH = "/opt/corral/agent.mjs";
/** node-pty's native addon, loaded by the agent for shells (built for the same node that runs the agent). */
export const PTY_ADDON_GUEST_PATH = "/opt/corral/pty.node";
export const NATIVE_ADDON_GUEST_PATH = "/opt/corral/corral-native.node";
export const GUEST_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** PID 1 of the base image: tini reaps orphans and forwards signals; the boot script ends in the agent. */
export const GUEST_INIT = `#!/bin/sh
exec /sbin/tini -- /etc/corral/boot
`;

/**
 * Runs under tini: mounts what the kernel does not, applies the hostname and network the host put on the
 * kernel command line (corral.hostname, corral.ip, corral.gw, corral.dns), then becomes the guest agent.
 * If the agent exits, tini exits, the kernel panics with panic=-1 and QEMU (-no-reboot) exits: a sandbox
 * whose agent is gone is over.
 */
export const GUEST_BOOT = `#!/bin/sh
export PATH=${GUEST_PATH_ENV}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
ip=; gw=; dns=; growfs=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    corral.hostname=*) hostname "\${arg#*=}"; echo "\${arg#*=}" > /etc/hostname ;;
    corral.ip=*) ip="\${arg#*=}" ;;
    corral.gw=*) gw="\${arg#*=}" ;;
    corral.dns=*) dns="\${arg#*=}" ;;
    corral.growfs=1) growfs=1 ;;
  esac
done
# The VM's disk is bigger than the image: grow the root filesystem online, in the background.
if [ -n "$growfs" ] && [ -x /usr/sbin/resize2fs ]; then
  (resize2fs /dev/vda >/var/log/resize2fs.log 2>&1 &)
fi
ip link set lo up
# A small SSH server for keys delivered with the VM's identity; it only accepts keys.
if [ -x /usr/sbin/dropbear ]; then
  mkdir -p /etc/dropbear
  dropbear -R -s -p 22 2>>/var/log/dropbear.log
fi
if [ -n "$ip" ]; then
  ip link set eth0 up
  ip addr add "$ip" dev eth0
  [ -n "$gw" ] && ip route add default via "$gw"
  [ -n "$dns" ] && echo "nameserver $dns" > /etc/resolv.conf
fi
export HOME=/root UV_THREADPOOL_SIZE=16
echo "corral-boot: $(hostname) is up after $(cut -d' ' -f1 /proc/uptime)s, starting the agent"
exec node ${AGENT_GUEST_PATH}
`;

export interface RootfsInput {
  stagingDir: string;
  outputFile: string;
  busyboxPath: string;
  tiniPath: string;
  nodePath: string;
  agentBundle: Buffer;
  ptyAddonPath: string;
  /** The agent's own addon (see src/image/guest-native.ts). */
  nativeAddonPath: string;
  /** Debian's dropbear, when installed on the host (the SSH server of the image). */
  dropbearPath: string | undefined;
  /** e2fsprogs' resize2fs: grows the root filesystem when a VM's disk is bigger than the image. */
  resize2fsPath: string | undefined;
  osRelease: string;
}

/** Lists the shared libraries a dynamically linked program loads, as absolute paths. */
export async function sharedLibraries(program: string): Promise<string[]> {
  const out = await run("ldd", [program]);
  const libs = new Set<string>();
  for (const line of out.split("\n")) {
    const match = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    if (match?.[1]) libs.add(match[1]);
  }
  return [...libs];
}

async function copyInto(root: string, guestPath: string, hostPath: string, mode: number): Promise<void> {
  const target = join(root, guestPath);
  await mkdir(dirname(target), { recursive: true });
  await copyFile(hostPath, target);
  await chmod(target, mode);
}

/** A dynamically linked program with every library ldd lists, at the same paths as on the host. */
async function copyProgram(root: string, guestPath: string, hostPath: string): Promise<void> {
  await copyInto(root, guestPath, hostPath, 0o755);
  for (const lib of await sharedLibraries(hostPath)) {
    if (!existsSync(join(root, lib))) await copyInto(root, lib, lib, 0o755);
  }
}

async function busyboxApplets(busybox: string): Promise<string[]> {
  const out = await run(busybox, ["--list-full"]);
  return out.split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
}

export function etcFiles(osRelease: string): Record<string, string> {
  return {
    "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "etc/group": "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
    "etc/shadow": "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
    "etc/hostname": "corral\n",
    "etc/hosts": "127.0.0.1 localhost\n::1 localhost\n",
    "etc/resolv.conf": "nameserver 10.0.2.3\n",
    "etc/os-release": osRelease,
    "etc/profile": `export PATH=${GUEST_PATH_ENV}\nexport PS1='\\u@\\h:\\w\\$ '\n`,
    "etc/shells": "/bin/sh\n/bin/ash\n",
  };
}

export async function buildRootfs(input: RootfsInput): Promise<void> {
  const mkfs = requireProgram("mkfs.ext4", "e2fsprogs");
  const root = input.stagingDir;
  for (const dir of ["bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "etc/corral", "etc/dropbear", "proc", "sys", "dev", "run", "tmp", "root", "home", "mnt", "var/lib/corral", "var/log", "opt/corral"]) {
    await mkdir(join(root, dir), { recursive: true });
  }
  await chmod(join(root, "tmp"), 0o1777);
  await chmod(join(root, "root"), 0o700);

  await copyInto(root, "bin/busybox", input.busyboxPath, 0o755);
  const provided = new Set(["sbin/init", "usr/bin/node", "sbin/tini", "usr/sbin/dropbear", "usr/sbin/resize2fs"]);
  for (const applet of await busyboxApplets(input.busyboxPath)) {
    if (provided.has(applet) || applet === "bin/busybox") continue;
    const target = join(root, applet);
    if (existsSync(target)) continue;
    await mkdir(dirname(target), { recursive: true });
    await symlink("/bin/busybox", target);
  }
  await copyInto(root, "sbin/tini", input.tiniPath, 0o755);
  await copyProgram(root, "usr/bin/node", input.nodePath);
  await copyInto(root, PTY_ADDON_GUEST_PATH.slice(1), input.ptyAddonPath, 0o755);
  await copyInto(root, NATIVE_ADDON_GUEST_PATH.slice(1), input.nativeAddonPath, 0o755);
  if (input.dropbearPath) await copyProgram(root, "usr/sbin/dropbear", input.dropbearPath);
  if (input.resize2fsPath) await copyProgram(root, "usr/sbin/resize2fs", input.resize2fsPath);

  await writeFile(join(root, AGENT_GUEST_PATH), input.agentBundle, { mode: 0o644 });
  await writeFile(join(root, "sbin/init"), GUEST_INIT, { mode: 0o755 });
  await writeFile(join(root, "etc/corral/boot"), GUEST_BOOT, { mode: 0o755 });
  for (const [path, contents] of Object.entries(etcFiles(input.osRelease))) {
    await writeFile(join(root, path), contents, { mode: path === "etc/shadow" ? 0o600 : 0o644 });
  }
  const caBundle = "/etc/ssl/certs/ca-certificates.crt";
  if (existsSync(caBundle)) await copyInto(root, caBundle.slice(1), caBundle, 0o644);

  await run(mkfs, ["-q", "-F", "-t", "ext4", "-L", "corral-root", "-E", "root_owner=0:0", "-d", root, input.outputFile, ROOTFS_SIZE]);
}
