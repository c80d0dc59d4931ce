// Builds the default image `base` from what is on this host (busybox, tini, node, the guest agent) and the
// Debian cloud kernel. The version id is a hash of every input, so an unchanged host rebuilds nothing and a
// changed agent or kernel yields a new version beside the old one.
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { buildExt4 } from "./ext4.ts";
import { guestRuntimeInputs, installGuestRuntime, sha256, sha256File } from "./guest-runtime.ts";
import type { CorralHome } from "./home.ts";
import { IMAGE_FILES, ImageStore, type ImageManifest, type ImageVersion } from "./image-store.ts";
import { buildInitramfs, initramfsInit } from "./initramfs.ts";
import { resolveBootModules } from "./kernel-modules.ts";
import { ensureKernel, type KernelInfo } from "./kernel.ts";
import type { Progress } from "./progress.ts";
import { etcFiles, ROOTFS_SIZE, stageBaseUserland } from "./rootfs.ts";
import { withFileLock } from "../util/file-lock.ts";
import { requireProgram } from "../util/run.ts";

export const BASE_IMAGE = "base";
/** Bump when the builder itself changes in a way the inputs below do not capture. */
const BUILDER_REVISION = "4";

interface BaseInputs {
  kernel: KernelInfo;
  busybox: string;
  record: Record<string, string>;
  version: string;
}

async function collectInputs(home: CorralHome, progress: Progress, forced: boolean): Promise<BaseInputs> {
  const kernel = await ensureKernel(home, progress);
  const busybox = requireProgram("busybox", "busybox-static");
  const record: Record<string, string> = {
    builder: BUILDER_REVISION,
    kernel_release: kernel.release,
    kernel_sha256: await sha256File(kernel.vmlinuz),
    ...(await guestRuntimeInputs()),
    userland_busybox_sha256: await sha256File(busybox),
    scripts_sha256: sha256(JSON.stringify(etcFiles("")) + initramfsInit([])),
    rootfs_size: ROOTFS_SIZE,
  };
  // A forced build is a new version: never the files of one that VMs may be using.
  if (forced) record.forced_at = new Date().toISOString();
  const version = sha256(JSON.stringify(record)).slice(0, 12);
  return { kernel, busybox, record, version };
}

function osRelease(version: string): string {
  return ['NAME="Corral base"', "ID=corral", `VERSION_ID="${version}"`, `PRETTY_NAME="Corral base image (busybox, Node.js ${process.version})"`, ""].join("\n");
}

export interface EnsureImageOptions {
  /** Build a new version even when one with the same inputs exists. */
  force?: boolean;
}

/**
 * Makes sure the current `base` image matches this host's inputs; builds it when not. Several processes may
 * ask at once (test runs, daemons): one builds, the others wait for it.
 */
export function ensureBaseImage(home: CorralHome, progress: Progress, options: EnsureImageOptions = {}): Promise<ImageVersion> {
  return withFileLock(join(home.root, "build.lock"), () => ensureBaseImageLocked(home, progress, options), {
    onWait: (pid) => progress.step(`waiting for another build (pid ${pid})`),
  });
}

async function ensureBaseImageLocked(home: CorralHome, progress: Progress, options: EnsureImageOptions): Promise<ImageVersion> {
  const store = new ImageStore(home.images);
  const inputs = await collectInputs(home, progress, options.force ?? false);
  const existing = options.force ? undefined : await store.reuse(BASE_IMAGE, inputs.version);
  if (existing) {
    progress.skip(`image "${BASE_IMAGE}" ${inputs.version} is up to date`);
    return existing;
  }

  progress.step(`building image "${BASE_IMAGE}" ${inputs.version} (kernel ${inputs.kernel.release}, node ${process.version})`);
  await mkdir(home.cache, { recursive: true });
  const work = await mkdtemp(join(home.cache, "image-"));
  try {
    const out = join(work, "out");
    await mkdir(out);
    const modules = await resolveBootModules(inputs.kernel.modulesDir);
    await writeFile(join(out, IMAGE_FILES.initrd), await buildInitramfs({ busyboxPath: inputs.busybox, modules }));
    await copyFile(inputs.kernel.vmlinuz, join(out, IMAGE_FILES.kernel));
    const rootfs = join(work, "rootfs");
    await stageBaseUserland(rootfs, { busyboxPath: inputs.busybox, osRelease: osRelease(inputs.version) });
    await installGuestRuntime(rootfs, { kernel: inputs.kernel, init: "corral", cacheDir: home.cache });
    await buildExt4(rootfs, join(out, IMAGE_FILES.rootfs), ROOTFS_SIZE);
    const manifest: ImageManifest = {
      name: BASE_IMAGE,
      version: inputs.version,
      created_at: new Date().toISOString(),
      kernel_release: inputs.kernel.release,
      rootfs_format: "raw",
      inputs: inputs.record,
      config: {},
      source: { kind: "recipe", recipe: BASE_IMAGE },
    };
    const image = await store.install(out, manifest);
    progress.done(`image "${BASE_IMAGE}" ${inputs.version} built in ${image.dir}`);
    return image;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
