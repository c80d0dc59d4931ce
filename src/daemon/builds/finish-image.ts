// The end of a Dockerfile build: the last step's disk (a qcow2 chain of commits over the FROM image)
// flattened into a raw ext4 with qemu-img, the image's config written to /etc/corral/image.json inside it
// with debugfs (no mounting), the FROM image's kernel and initramfs beside it, installed atomically as a new
// version. The version id is a hash of the last step's cache key and the config, so a rebuild that changed
// nothing installs nothing.
import { createHash } from "node:crypto";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { IMAGE_FILES, type ImageConfig, type ImageManifest, type ImageSource, type ImageStore, type ImageVersion } from "../../image/image-store.ts";
import { CommandError, requireProgram, run } from "../../util/run.ts";

export interface FinishRequest {
  images: ImageStore;
  name: string;
  parent: ImageVersion;
  /** The disk the last step left: the FROM image untouched, or a commit's qcow2 overlay. */
  disk: { kind: "image" } | { kind: "commit"; path: string };
  key: string;
  config: ImageConfig;
  source: ImageSource;
  /** A new version even when the steps' keys are unchanged (a --no-cache build). */
  force: boolean;
  signal: AbortSignal;
}

/** Where /etc/corral/image.json is in every Corral image. */
export const GUEST_IMAGE_CONFIG = "/etc/corral/image.json";

export async function installBuiltImage(request: FinishRequest): Promise<{ image: ImageVersion; reused: boolean }> {
  const { images, name, parent } = request;
  // A forced (--no-cache) build re-ran its steps, whose results may differ: it is a version of its own, never
  // a rewrite of one that VMs may be using.
  const forcedAt = request.force ? new Date().toISOString() : "";
  const version = createHash("sha256")
    .update(`${request.key}\0${JSON.stringify(request.config)}\0${forcedAt}`)
    .digest("hex")
    .slice(0, 12);
  if (!request.force && (await images.has(name, version))) {
    await images.setCurrent(name, version);
    return { image: await images.load(name, version), reused: true };
  }
  // Beside the image store (same filesystem: install renames), like the recipe builds' work folders.
  const cache = join(dirname(images.dir), "cache");
  await mkdir(cache, { recursive: true });
  const work = await mkdtemp(join(cache, "dockerfile-"));
  try {
    const out = join(work, "out");
    await mkdir(out);
    const rootfs = join(out, IMAGE_FILES.rootfs);
    const qemuImg = requireProgram("qemu-img", "qemu-utils");
    const source = request.disk.kind === "image" ? ["-f", parent.rootfsFormat, parent.rootfs] : ["-f", "qcow2", request.disk.path];
    await run(qemuImg, ["convert", "-O", "raw", ...source, rootfs], { signal: request.signal });
    await writeGuestConfig(rootfs, request.config, join(work, "image.json"), request.signal);
    await copyFile(parent.kernel, join(out, IMAGE_FILES.kernel));
    await copyFile(parent.initrd, join(out, IMAGE_FILES.initrd));
    const manifest: ImageManifest = {
      name,
      version,
      created_at: new Date().toISOString(),
      kernel_release: parent.manifest.kernel_release,
      rootfs_format: "raw",
      inputs: { dockerfile_key: request.key, parent: `${parent.name}@${parent.version}`, ...(forcedAt ? { forced_at: forcedAt } : {}) },
      config: request.config,
      source: request.source,
      parent: { name: parent.name, version: parent.version },
    };
    request.signal.throwIfAborted();
    return { image: await images.install(out, manifest), reused: false };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Writes the config into the ext4 image without mounting it (debugfs from e2fsprogs). */
async function writeGuestConfig(rootfs: string, config: ImageConfig, scratch: string, signal: AbortSignal): Promise<void> {
  await writeFile(scratch, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o644 });
  // The disk was saved from a running guest: its journal may hold writes not yet in place. They are replayed
  // first; a later mount would otherwise replay them over what debugfs wrote (seen: EBADMSG in the guest).
  await runFsck(rootfs, signal);
  const debugfs = requireProgram("debugfs", "e2fsprogs");
  // debugfs goes on past a failing command: "mkdir" of an existing folder and "rm" of a missing file are fine.
  const commands = [
    "mkdir /etc",
    "mkdir /etc/corral",
    `rm ${GUEST_IMAGE_CONFIG}`,
    `write ${scratch} ${GUEST_IMAGE_CONFIG}`,
    `sif ${GUEST_IMAGE_CONFIG} uid 0`,
    `sif ${GUEST_IMAGE_CONFIG} gid 0`,
  ].join("\n");
  await run(debugfs, ["-w", "-f", "-", rootfs], { input: `${commands}\n`, signal });
  // debugfs exits 0 even when a command failed: read the file back to be sure it is there.
  const written = await run(debugfs, ["-R", `cat ${GUEST_IMAGE_CONFIG}`, rootfs], { signal });
  if (written.trim() !== JSON.stringify(config, null, 2)) throw new Error(`Cannot write ${GUEST_IMAGE_CONFIG} into the built image`);
}

/** Replays the journal only (fast); exit codes 1 and 2 mean it changed the file system, which is expected. */
async function runFsck(rootfs: string, signal: AbortSignal): Promise<void> {
  const e2fsck = requireProgram("e2fsck", "e2fsprogs");
  try {
    await run(e2fsck, ["-y", "-E", "journal_only", rootfs], { signal });
  } catch (err) {
    if (err instanceof CommandError && (err.exitCode === 1 || err.exitCode === 2)) return;
    throw err;
  }
}
