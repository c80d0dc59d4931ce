// Builds the default image `base` from what is on this host (busybox, tini, node, the guest agent) and the
// Debian cloud kernel. The version id is a hash of every input, so an unchanged host rebuilds nothing and a
// changed agent or kernel yields a new version beside the old one.
import { createHash } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { AGENT_VERSION } from "../protocol/agent.ts";
import { bundleGuestAgent } from "./guest-bundle.ts";
import { buildGuestNative } from "./guest-native.ts";
import type { CorralHome } from "./home.ts";
import { IMAGE_FILES, ImageStore, type ImageManifest, type ImageVersion } from "./image-store.ts";
import { buildInitramfs, initramfsInit } from "./initramfs.ts";
import { resolveBootModules } from "./kernel-modules.ts";
import { ensureKernel, type KernelInfo } from "./kernel.ts";
import type { Progress } from "./progress.ts";
import { buildRootfs, GUEST_BOOT, GUEST_INIT, ROOTFS_SIZE } from "./rootfs.ts";
import { withFileLock } from "../util/file-lock.ts";
import { findProgram, requireProgram } from "../util/run.ts";

export const BASE_IMAGE = "base";
/** Bump when the builder itself changes in a way the inputs below do not capture. */
const BUILDER_REVISION = "3";

async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

function sha256(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}

interface BaseInputs {
  kernel: KernelInfo;
  busybox: string;
  tini: string;
  node: string;
  ptyAddon: string;
  nativeAddon: string;
  dropbear: string | undefined;
  resize2fs: string | undefined;
  agentBundle: Buffer;
  record: Record<string, string>;
  version: string;
}

async function collectInputs(home: CorralHome, progress: Progress, forced: boolean): Promise<BaseInputs> {
  const kernel = await ensureKernel(home, progress);
  const busybox = requireProgram("busybox", "busybox-static");
  const tini = findProgram("tini-static") ?? requireProgram("tini", "tini");
  const node = process.execPath;
  const ptyAddon = ptyAddonPath();
  const nativeAddon = await buildGuestNative(home.cache);
  const dropbear = findProgram("dropbear");
  const resize2fs = findProgram("resize2fs");
  const agentBundle = await bundleGuestAgent();
  const record: Record<string, string> = {
    builder: BUILDER_REVISION,
    kernel_release: kernel.release,
    kernel_sha256: await sha256File(kernel.vmlinuz),
    busybox_sha256: await sha256File(busybox),
    tini_sha256: await sha256File(tini),
    node_version: process.version,
    node_sha256: await sha256File(node),
    pty_addon_sha256: await sha256File(ptyAddon),
    native_addon_sha256: await sha256File(nativeAddon),
    dropbear_sha256: dropbear ? await sha256File(dropbear) : "none",
    resize2fs_sha256: resize2fs ? await sha256File(resize2fs) : "none",
    agent_version: AGENT_VERSION,
    agent_sha256: sha256(agentBundle),
    scripts_sha256: sha256(GUEST_INIT + GUEST_BOOT + initramfsInit([])),
    rootfs_size: ROOTFS_SIZE,
  };
  // A forced build is a new version: never the files of one that VMs may be using.
  if (forced) record.forced_at = new Date().toISOString();
  const version = sha256(JSON.stringify(record)).slice(0, 12);
  return { kernel, busybox, tini, node, ptyAddon, nativeAddon, dropbear, resize2fs, agentBundle, record, version };
}

/** node-pty's addon, built by npm for this very node (so it loads in the guest, which runs the same node). */
function ptyAddonPath(): string {
  const pkg = createRequire(import.meta.url).resolve("node-pty/package.json");
  const addon = join(dirname(pkg), "build", "Release", "pty.node");
  if (!existsSync(addon)) throw new Error(`node-pty's native addon is missing (${addon}): run "npm ci" (it compiles node-pty)`);
  return addon;
}

function osRelease(version: string): string {
  return [
    'NAME="Corral base"',
    "ID=corral",
    `VERSION_ID="${version}"`,
    `PRETTY_NAME="Corral base image (busybox, Node.js ${process.version})"`,
    "",
  ].join("\n");
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
  if (!options.force && (await store.has(BASE_IMAGE, inputs.version))) {
    const current = await store.resolve(BASE_IMAGE).catch(() => undefined);
    if (current?.version !== inputs.version) await store.setCurrent(BASE_IMAGE, inputs.version);
    progress.skip(`image "${BASE_IMAGE}" ${inputs.version} is up to date`);
    return store.resolve(BASE_IMAGE);
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
    await buildRootfs({
      stagingDir: join(work, "rootfs"),
      outputFile: join(out, IMAGE_FILES.rootfs),
      busyboxPath: inputs.busybox,
      tiniPath: inputs.tini,
      nodePath: inputs.node,
      agentBundle: inputs.agentBundle,
      ptyAddonPath: inputs.ptyAddon,
      nativeAddonPath: inputs.nativeAddon,
      dropbearPath: inputs.dropbear,
      resize2fsPath: inputs.resize2fs,
      osRelease: osRelease(inputs.version),
    });
    const manifest: ImageManifest = {
      name: BASE_IMAGE,
      version: inputs.version,
      created_at: new Date().toISOString(),
      kernel_release: inputs.kernel.release,
      rootfs_format: "raw",
      inputs: inputs.record,
    };
    const image = await store.install(out, manifest);
    progress.done(`image "${BASE_IMAGE}" ${inputs.version} built in ${image.dir}`);
    return image;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
