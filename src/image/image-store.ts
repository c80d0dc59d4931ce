// Images on this host. Each build is an immutable version folder; `current` points at the newest. VMs keep
// the version they were created from (their overlays name its rootfs as backing file), so rebuilding an image
// never disturbs a running VM.
//
//   images/NAME/versions/ID/{vmlinuz, initrd.img, rootfs.ext4, image.json}
//   images/NAME/current -> versions/ID
import { existsSync } from "node:fs";
import { chmod, mkdir, readdir, readFile, readlink, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CorralError } from "../protocol/errors.ts";
import { assertImageName, isImageName } from "../protocol/names.ts";

export type DiskFormat = "raw" | "qcow2";

/** What the image says about running in it, in OCI's spirit (snake_case); also written to /etc/corral/image.json in the guest. */
export interface ImageConfig {
  /** "KEY=VALUE" entries. */
  env?: string[];
  working_dir?: string;
  user?: string;
  entrypoint?: string[];
  cmd?: string[];
  labels?: Record<string, string>;
  /** The login user a Slicer client expects (e.g. "ubuntu" on Slicer's images). */
  default_user?: string;
}

/** Where a version came from. */
export interface ImageSource {
  kind: "recipe" | "dockerfile" | "oci";
  [field: string]: unknown;
}

/** The image version a build started from. */
export interface ImageParent {
  name: string;
  version: string;
}

export interface ImageManifest {
  name: string;
  version: string;
  created_at: string;
  kernel_release: string;
  rootfs_format: DiskFormat;
  /** What went into the build; equal inputs give the same version id. */
  inputs: Record<string, string>;
  config?: ImageConfig;
  source?: ImageSource;
  parent?: ImageParent;
}

export interface ImageVersion {
  name: string;
  version: string;
  dir: string;
  kernel: string;
  initrd: string;
  rootfs: string;
  rootfsFormat: DiskFormat;
  manifest: ImageManifest;
}

export interface ImageSummary {
  name: string;
  version: string;
  created_at: string;
  kernel_release: string;
  /** Bytes the root filesystem really occupies on the host (it is a sparse file). */
  disk_usage_bytes: number;
  /** Size the guest sees. */
  disk_size_bytes: number;
  versions: number;
}

/** Images Corral builds from its own recipes; any other name is built from a Dockerfile or imported. */
export const RECIPE_IMAGES = ["base", "debian"] as const;

function buildHint(name: string): string {
  if ((RECIPE_IMAGES as readonly string[]).includes(name)) return `build it with "corral image build ${name}" (or "./corral up", which builds both)`;
  return `build or import it first ("corral image build", "corral image import" or "corral image pull"); "corral image list" shows the images there are`;
}

export const IMAGE_FILES = { kernel: "vmlinuz", initrd: "initrd.img", rootfs: "rootfs.ext4", manifest: "image.json" } as const;

export class ImageStore {
  constructor(readonly dir: string) {}

  versionDir(name: string, version: string): string {
    return join(this.dir, assertImageName(name), "versions", version);
  }

  /** The current version of an image; `image_not_found` when there is none. */
  async resolve(name: string): Promise<ImageVersion> {
    assertImageName(name);
    const current = join(this.dir, name, "current");
    let target: string;
    try {
      target = await readlink(current);
    } catch {
      throw new CorralError("image_not_found", `Image ${JSON.stringify(name)} does not exist: ${buildHint(name)}`);
    }
    const version = target.split("/").pop() ?? "";
    return this.load(name, version);
  }

  /** A specific version, as recorded on a VM. */
  async load(name: string, version: string): Promise<ImageVersion> {
    const dir = this.versionDir(name, version);
    let manifest: ImageManifest;
    try {
      manifest = JSON.parse(await readFile(join(dir, IMAGE_FILES.manifest), "utf8")) as ImageManifest;
    } catch (cause) {
      throw new CorralError("image_not_found", `Image ${JSON.stringify(name)} version ${JSON.stringify(version)} is missing or incomplete`, { cause });
    }
    return {
      name,
      version,
      dir,
      kernel: join(dir, IMAGE_FILES.kernel),
      initrd: join(dir, IMAGE_FILES.initrd),
      rootfs: join(dir, IMAGE_FILES.rootfs),
      rootfsFormat: manifest.rootfs_format,
      manifest,
    };
  }

  async has(name: string, version: string): Promise<boolean> {
    return existsSync(join(this.versionDir(name, version), IMAGE_FILES.manifest));
  }
  /** An installed version, made current when it was not (a build with equal inputs); undefined when absent. */
  async reuse(name: string, version: string): Promise<ImageVersion | undefined> {
    if (!(await this.has(name, version))) return undefined;
    const current = await this.resolve(name).catch(() => undefined);
    if (current?.version !== version) await this.setCurrent(name, version);
    return this.load(name, version);
  }

  /**
   * Moves a fully built version folder into place and makes it current. The manifest is written last, so a
   * folder without one is debris of an interrupted build.
   */
  async install(builtDir: string, manifest: ImageManifest): Promise<ImageVersion> {
    const dir = this.versionDir(manifest.name, manifest.version);
    await mkdir(join(this.dir, manifest.name, "versions"), { recursive: true });
    await rm(dir, { recursive: true, force: true });
    // Images are read-only on the host: VMs write only to their own overlays.
    for (const file of [IMAGE_FILES.kernel, IMAGE_FILES.initrd, IMAGE_FILES.rootfs]) await chmod(join(builtDir, file), 0o444);
    await writeFile(join(builtDir, IMAGE_FILES.manifest), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o444 });
    await rename(builtDir, dir);
    await this.setCurrent(manifest.name, manifest.version);
    return this.load(manifest.name, manifest.version);
  }

  async setCurrent(name: string, version: string): Promise<void> {
    const link = join(this.dir, name, "current");
    const temp = `${link}.${process.pid}.tmp`;
    await rm(temp, { force: true });
    await symlink(join("versions", version), temp);
    await rename(temp, link);
  }

  async list(): Promise<ImageSummary[]> {
    if (!existsSync(this.dir)) return [];
    const summaries: ImageSummary[] = [];
    for (const name of (await readdir(this.dir)).sort()) {
      if (!isImageName(name)) continue;
      let image: ImageVersion;
      try {
        image = await this.resolve(name);
      } catch {
        continue;
      }
      const rootfs = await stat(image.rootfs);
      const versions = await readdir(join(this.dir, name, "versions"));
      summaries.push({
        name,
        version: image.version,
        created_at: image.manifest.created_at,
        kernel_release: image.manifest.kernel_release,
        disk_usage_bytes: rootfs.blocks * 512,
        disk_size_bytes: rootfs.size,
        versions: versions.length,
      });
    }
    return summaries;
  }
}
