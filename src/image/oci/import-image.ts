// An image version from an OCI source: skopeo normalises the source into an OCI layout, the layers are
// applied in order (whiteouts included) into a staging folder, Corral's guest runtime goes in, and the
// folder becomes ext4 with `mkfs.ext4 -d` (no mounting). Everything happens in a work folder under the
// cache; only a whole version is moved into the store (ImageStore.install), so a failed or interrupted
// import leaves nothing half-written there. The version id is a hash of the image's manifest digest, the
// kernel and the runtime: importing the same image again only makes it current.
import { createHash } from "node:crypto";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { UnsafeEntryError } from "../../archive/index.ts";
import { CorralError } from "../../protocol/errors.ts";
import { assertImageName } from "../../protocol/names.ts";
import { withFileLock } from "../../util/file-lock.ts";
import { requireProgram, run } from "../../util/run.ts";
import { storageFullError } from "../../util/storage-full.ts";
import type { CorralHome } from "../home.ts";
import { IMAGE_FILES, type ImageConfig, type ImageManifest, type ImageSource, type ImageStore, type ImageVersion } from "../image-store.ts";
import { buildInitramfs } from "../initramfs.ts";
import { resolveBootModules } from "../kernel-modules.ts";
import { ensureKernel, type KernelInfo } from "../kernel.ts";
import type { Progress } from "../progress.ts";
import { applyLayer, MalformedLayerError } from "./apply-layer.ts";
import { readLayout, openLayer } from "./layout.ts";
import { imageConfigFromOci } from "./oci-config.ts";
import { copyToLayout, type SkopeoSource } from "./skopeo.ts";

/** Bump when the importer changes in a way the inputs below do not capture. */
const IMPORTER_REVISION = "1";
const MiB = 1024 * 1024;

/** Corral's guest runtime as the importer needs it (src/image/guest-runtime.ts provides it). */
export interface GuestRuntime {
  /** Puts the agent, its init and the kernel's modules into a staged root. */
  install(root: string, options: { kernel: KernelInfo; config: ImageConfig; cacheDir: string }): Promise<void>;
  /** Hashes of what the runtime is made of (a changed agent gives a new version). */
  inputs(): Promise<Record<string, string>>;
}

export interface ImportDeps {
  home: CorralHome;
  store: ImageStore;
  runtime: GuestRuntime;
  progress: Progress;
  signal?: AbortSignal;
}

export interface ImportRequest {
  name: string;
  source: SkopeoSource;
  /** What the manifest records as the version's source. */
  record: ImageSource;
  /** A folder under the cache the caller made (it may already hold the uploaded archive); removed at the end. */
  work: string;
}

/** A work folder under the cache for one import; the caller removes it (importOci does). */
export async function importWorkDir(home: CorralHome): Promise<string> {
  await mkdir(home.cache, { recursive: true });
  return mkdtemp(join(home.cache, "import-"));
}

export async function importOci(request: ImportRequest, deps: ImportDeps): Promise<ImageVersion> {
  assertImageName(request.name);
  try {
    return await withFileLock(join(deps.home.root, `import-${request.name}.lock`), () => importLocked(request, deps), {
      onWait: (pid) => deps.progress.step(`waiting for another import of "${request.name}" (pid ${pid})`),
    });
  } catch (err) {
    // A full disk is the host's condition (507), whichever step ran out: the upload, skopeo, a layer, mkfs.
    throw storageFullError(err, `image "${request.name}"`, deps.home.root) ?? err;
  } finally {
    await rm(request.work, { recursive: true, force: true });
  }
}

async function importLocked(request: ImportRequest, deps: ImportDeps): Promise<ImageVersion> {
  const { progress, store } = deps;
  // An import never takes over a built image (`base`, `debian`, a Dockerfile's): their builders own them.
  const existing = await store.resolve(request.name).catch(() => undefined);
  if (existing && existing.manifest.source?.kind !== "oci") {
    throw new CorralError(
      "conflict",
      `Image ${JSON.stringify(request.name)} is built by Corral (${existing.manifest.source?.kind ?? "recipe"}), not imported: import under another name`,
    );
  }
  const layoutDir = join(request.work, "layout");
  progress.step(`reading ${request.source.label}`);
  await copyToLayout(request.source, layoutDir, request.work, deps.signal);
  const image = await readLayout(layoutDir);
  progress.done(`${request.source.label}: ${image.layers.length} layer(s), ${(image.layerBytes / MiB).toFixed(1)} MiB, manifest ${image.manifestDigest}`);

  const kernel = await ensureKernel(deps.home, progress);
  const inputs: Record<string, string> = {
    importer: IMPORTER_REVISION,
    manifest_digest: image.manifestDigest,
    kernel_release: kernel.release,
    ...(await deps.runtime.inputs()),
  };
  const version = createHash("sha256").update(JSON.stringify(inputs)).digest("hex").slice(0, 12);
  if (await store.has(request.name, version)) {
    await store.setCurrent(request.name, version);
    progress.skip(`image "${request.name}" ${version} is already imported`);
    return store.load(request.name, version);
  }

  const root = join(request.work, "rootfs");
  await mkdir(root, { mode: 0o755 });
  for (const [index, layer] of image.layers.entries()) {
    deps.signal?.throwIfAborted();
    progress.step(`applying layer ${index + 1}/${image.layers.length} (${(layer.size / MiB).toFixed(1)} MiB)`);
    try {
      const result = await applyLayer(openLayer(layoutDir, layer, index), root);
      progress.done(`layer ${index + 1}: ${result.files} files, ${result.whiteouts} whiteouts${result.skipped ? `, ${result.skipped} device nodes skipped` : ""}`);
    } catch (err) {
      if (err instanceof UnsafeEntryError || err instanceof MalformedLayerError) {
        throw new CorralError("invalid_image_archive", `Layer ${index + 1} (${layer.digest}) cannot be applied: ${err.message}`, { cause: err });
      }
      throw err;
    }
  }

  const config = imageConfigFromOci(image.config);
  progress.step("installing the guest runtime (agent, init, kernel modules)");
  await deps.runtime.install(root, { kernel, config, cacheDir: deps.home.cache });
  progress.done("guest runtime installed");

  const out = join(request.work, "out");
  await mkdir(out);
  progress.step("building the root filesystem (ext4)");
  const sizeMiB = await buildExt4Fitting(root, join(out, IMAGE_FILES.rootfs));
  progress.done(`root filesystem built: ${sizeMiB} MiB`);
  await writeFile(
    join(out, IMAGE_FILES.initrd),
    await buildInitramfs({ busyboxPath: requireProgram("busybox", "busybox-static"), modules: await resolveBootModules(kernel.modulesDir) }),
  );
  await copyFile(kernel.vmlinuz, join(out, IMAGE_FILES.kernel));

  // A client that left while mkfs ran does not get an image it no longer waits for.
  deps.signal?.throwIfAborted();
  const manifest: ImageManifest = {
    name: request.name,
    version,
    created_at: new Date().toISOString(),
    kernel_release: kernel.release,
    rootfs_format: "raw",
    inputs,
    config,
    source: { ...request.record, digest: image.manifestDigest },
  };
  const installed = await store.install(out, manifest);
  progress.done(`image "${request.name}" ${version} installed`);
  return installed;
}

/**
 * ext4 sized to the content with headroom (a quarter more, and 1 GiB for what the guest writes before a
 * VM's bigger disk is grown into), and inodes enough for many small files.
 */
async function buildExt4Fitting(root: string, output: string): Promise<number> {
  const usage = await run("du", ["-s", "-B1", "--apparent-size", root]);
  const blocks = await run("du", ["-s", "-B1", root]);
  const inodes = await run("du", ["-s", "--inodes", root]);
  const bytes = Math.max(Number.parseInt(usage, 10) || 0, Number.parseInt(blocks, 10) || 0);
  const files = Number.parseInt(inodes, 10) || 0;
  const sizeMiB = Math.max(1024, Math.ceil((bytes * 1.25) / MiB) + 1024);
  const inodeCount = Math.max(65_536, files * 2);
  const mkfs = requireProgram("mkfs.ext4", "e2fsprogs");
  await run(mkfs, ["-q", "-F", "-t", "ext4", "-L", "corral-root", "-N", String(inodeCount), "-E", "root_owner=0:0", "-d", root, output, `${sizeMiB}M`]);
  return sizeMiB;
}
