// The base image's own userland: busybox with its applets, a passwd with root, a CA bundle, and `node` on
// PATH. The agent, node itself and the init come from the guest runtime (src/image/guest-runtime.ts), which
// base-image.ts installs on top, as it does into every other image.
import { chmod, copyFile, mkdir, symlink, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { run } from "../util/run.ts";
import { CORRAL_INIT_PATH, GUEST_PATH_ENV, RUNTIME_NODE } from "./guest-runtime-scripts.ts";

export const ROOTFS_SIZE = "4G";

async function busyboxApplets(busybox: string): Promise<string[]> {
  const out = await run(busybox, ["--list-full"]);
  return out
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
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

export interface BaseUserlandInput {
  busyboxPath: string;
  osRelease: string;
}

/** Stages base's files in `root`; the runtime goes on top before the folder becomes ext4. */
export async function stageBaseUserland(root: string, input: BaseUserlandInput): Promise<void> {
  for (const dir of ["bin", "sbin", "usr/bin", "usr/sbin", "usr/local/bin", "etc", "home", "mnt", "root", "tmp"]) {
    await mkdir(join(root, dir), { recursive: true });
  }
  await chmod(join(root, "root"), 0o700);
  await copyFile(input.busyboxPath, join(root, "bin/busybox"));
  await chmod(join(root, "bin/busybox"), 0o755);
  // init and node are the runtime's; the links let users and scripts find them where they expect.
  const provided: Record<string, string> = { "sbin/init": CORRAL_INIT_PATH, "usr/bin/node": RUNTIME_NODE };
  for (const [path, target] of Object.entries(provided)) await symlink(target, join(root, path));
  for (const applet of await busyboxApplets(input.busyboxPath)) {
    if (applet in provided || applet === "bin/busybox") continue;
    const target = join(root, applet);
    if (existsSync(target)) continue;
    await mkdir(dirname(target), { recursive: true });
    await symlink("/bin/busybox", target);
  }
  for (const [path, contents] of Object.entries(etcFiles(input.osRelease))) {
    await writeFile(join(root, path), contents, { mode: path === "etc/shadow" ? 0o600 : 0o644 });
  }
  const caBundle = "/etc/ssl/certs/ca-certificates.crt";
  if (existsSync(caBundle)) {
    await mkdir(join(root, dirname(caBundle)), { recursive: true });
    await copyFile(caBundle, join(root, caBundle));
  }
}
