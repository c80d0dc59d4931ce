// The guest kernel: Debian's cloud kernel, fetched with apt-get download and unpacked with dpkg-deb.
// Kept under CORRAL_HOME/kernels/VERSION/ with a kernel.json that makes the step idempotent.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { CorralHome } from "./home.ts";
import { requireProgram, run } from "../util/run.ts";
import type { Progress } from "./progress.ts";

export const KERNEL_META_PACKAGE = "linux-image-cloud-amd64";

export interface KernelInfo {
  /** Kernel release, e.g. "6.1.0-56-cloud-amd64". */
  release: string;
  debianPackage: string;
  dir: string;
  vmlinuz: string;
  /** lib/modules/RELEASE of the unpacked package. */
  modulesDir: string;
}

const KERNEL_JSON = "kernel.json";

/** Returns the kernel already unpacked under CORRAL_HOME, or undefined. Never touches the network. */
export async function findInstalledKernel(home: CorralHome): Promise<KernelInfo | undefined> {
  const current = join(home.kernels, "current.json");
  if (!existsSync(current)) return undefined;
  const info = JSON.parse(await readFile(current, "utf8")) as KernelInfo;
  if (!existsSync(info.vmlinuz) || !existsSync(info.modulesDir)) return undefined;
  return info;
}

/** Unpacks the Debian cloud kernel once; later calls return the installed one without asking apt. */
export async function ensureKernel(home: CorralHome, progress: Progress): Promise<KernelInfo> {
  const installed = await findInstalledKernel(home);
  if (installed) {
    progress.skip(`kernel ${installed.release} is installed`);
    return installed;
  }
  requireProgram("apt-get", "apt");
  requireProgram("dpkg-deb", "dpkg");
  const debianPackage = await resolveKernelPackage();
  progress.step(`downloading ${debianPackage}`);
  await mkdir(home.cache, { recursive: true });
  const work = await mkdtemp(join(home.cache, "kernel-"));
  try {
    // apt-get download writes into the current directory; as root it warns that _apt cannot read it.
    await run("apt-get", ["download", "-q", debianPackage], { cwd: work });
    const deb = (await readdir(work)).find((f) => f.endsWith(".deb"));
    if (!deb) throw new Error(`apt-get download ${debianPackage} produced no .deb file`);
    progress.step(`unpacking ${deb}`);
    const unpacked = join(work, "root");
    await run("dpkg-deb", ["-x", join(work, deb), unpacked]);
    const vmlinuzName = (await readdir(join(unpacked, "boot"))).find((f) => f.startsWith("vmlinuz-"));
    if (!vmlinuzName) throw new Error(`${deb} contains no boot/vmlinuz-*`);
    const release = vmlinuzName.slice("vmlinuz-".length);
    const dir = join(home.kernels, release);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    await rename(join(unpacked, "boot", vmlinuzName), join(dir, "vmlinuz"));
    await rename(join(unpacked, "boot", `config-${release}`), join(dir, "config")).catch(() => undefined);
    await rename(join(unpacked, "lib", "modules", release), join(dir, "modules"));
    const info: KernelInfo = { release, debianPackage, dir, vmlinuz: join(dir, "vmlinuz"), modulesDir: join(dir, "modules") };
    await writeFile(join(dir, KERNEL_JSON), JSON.stringify(info, null, 2));
    await writeFile(join(home.kernels, "current.json.tmp"), JSON.stringify(info, null, 2));
    await rename(join(home.kernels, "current.json.tmp"), join(home.kernels, "current.json"));
    progress.done(`kernel ${release} unpacked into ${dir}`);
    return info;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** linux-image-cloud-amd64 is a meta package: its first linux-image-* dependency is the real kernel. */
async function resolveKernelPackage(): Promise<string> {
  const out = await run("apt-cache", ["depends", KERNEL_META_PACKAGE]);
  const match = /Depends:\s+(linux-image-\S+)/.exec(out);
  if (!match?.[1]) {
    throw new Error(`Cannot resolve ${KERNEL_META_PACKAGE} to a kernel package: run "apt-get update" and try again`);
  }
  return match[1];
}
