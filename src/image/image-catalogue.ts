// The catalogue of a host's images: every version with its sizes, source, config and what uses it, and the
// two ways versions go away. `remove` takes a whole image, refused while any version is in use; `prune`
// removes each version nothing uses, except an image's current one. "In use" is read from the disks of
// every daemon sharing the store (image-usage.ts), so one daemon never deletes what another's VM boots from.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readdir, readlink, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { CorralError } from "../protocol/errors.ts";
import { assertImageName, isImageName } from "../protocol/names.ts";
import { IMAGE_FILES, type ImageConfig, type ImageParent, type ImageSource, type ImageStore } from "./image-store.ts";
import { scanImageUses, type ImageUse } from "./image-usage.ts";

export interface ImageVersionDetail {
  version: string;
  current: boolean;
  created_at: string;
  kernel_release: string;
  /** Bytes the version's files occupy on the host (the rootfs is sparse). */
  disk_usage_bytes: number;
  /** The root disk's size as a guest sees it (before a VM grows it). */
  disk_size_bytes: number;
  source: ImageSource | null;
  parent: ImageParent | null;
  config: ImageConfig;
  used_by: ImageUse[];
}

export interface ImageDetail {
  name: string;
  /** The version new VMs get; null when the image has versions but none is current. */
  version: string | null;
  versions: ImageVersionDetail[];
}

export interface PruneResult {
  removed: Array<{ name: string; version: string; disk_usage_bytes: number }>;
  reclaimed_bytes: number;
}

async function usageBytes(dir: string): Promise<number> {
  let total = 0;
  for (const file of await readdir(dir).catch(() => [] as string[])) {
    const info = await stat(join(dir, file)).catch(() => undefined);
    if (info?.isFile()) total += info.blocks * 512;
  }
  return total;
}

export class ImageCatalogue {
  constructor(private readonly store: ImageStore) {}

  private async names(): Promise<string[]> {
    if (!existsSync(this.store.dir)) return [];
    return (await readdir(this.store.dir)).filter(isImageName).sort();
  }

  private async currentVersion(name: string): Promise<string | null> {
    const target = await readlink(join(this.store.dir, name, "current")).catch(() => undefined);
    return target?.split("/").pop() ?? null;
  }

  private async versionIds(name: string): Promise<string[]> {
    const dir = join(this.store.dir, name, "versions");
    const ids: string[] = [];
    for (const id of await readdir(dir).catch(() => [] as string[])) {
      if (existsSync(join(dir, id, IMAGE_FILES.manifest))) ids.push(id);
    }
    return ids;
  }

  private async detailWith(name: string, uses: Map<string, ImageUse[]>): Promise<ImageDetail | undefined> {
    const current = await this.currentVersion(name);
    const versions: ImageVersionDetail[] = [];
    for (const id of await this.versionIds(name)) {
      const image = await this.store.load(name, id).catch(() => undefined);
      if (!image) continue;
      const rootfs = await stat(image.rootfs).catch(() => undefined);
      versions.push({
        version: id,
        current: id === current,
        created_at: image.manifest.created_at,
        kernel_release: image.manifest.kernel_release,
        disk_usage_bytes: await usageBytes(image.dir),
        disk_size_bytes: rootfs?.size ?? 0,
        source: image.manifest.source ?? null,
        parent: image.manifest.parent ?? null,
        config: image.manifest.config ?? {},
        used_by: uses.get(`${name}/${id}`) ?? [],
      });
    }
    if (versions.length === 0) return undefined;
    versions.sort((a, b) => b.created_at.localeCompare(a.created_at));
    return { name, version: current, versions };
  }

  async list(): Promise<ImageDetail[]> {
    const uses = await scanImageUses(this.store.dir);
    const details: ImageDetail[] = [];
    for (const name of await this.names()) {
      const detail = await this.detailWith(name, uses);
      if (detail) details.push(detail);
    }
    return details;
  }

  async show(name: string): Promise<ImageDetail> {
    assertImageName(name);
    const detail = await this.detailWith(name, await scanImageUses(this.store.dir));
    if (!detail) throw new CorralError("image_not_found", `Image ${JSON.stringify(name)} does not exist (GET /images lists this host's images)`);
    return detail;
  }

  /** Removes an image and all its versions; `image_in_use` (409) while a VM, template or commit uses one. */
  async remove(name: string): Promise<ImageDetail> {
    const detail = await this.show(name);
    const used = detail.versions.filter((v) => v.used_by.length > 0);
    if (used.length > 0) {
      const users = used.flatMap((v) => v.used_by.map((u) => `${u.kind} ${JSON.stringify(u.id)} (version ${v.version})`));
      throw new CorralError(
        "image_in_use",
        `Cannot remove image ${JSON.stringify(name)}: in use by ${users.slice(0, 5).join(", ")}${users.length > 5 ? ` and ${users.length - 5} more` : ""}`,
      );
    }
    await this.discard(join(this.store.dir, name));
    return detail;
  }

  /** Removes every version that nothing uses and that is not its image's current version. */
  async prune(): Promise<PruneResult> {
    const result: PruneResult = { removed: [], reclaimed_bytes: 0 };
    for (const image of await this.list()) {
      for (const version of image.versions) {
        if (version.current || version.used_by.length > 0) continue;
        await this.discard(this.store.versionDir(image.name, version.version));
        result.removed.push({ name: image.name, version: version.version, disk_usage_bytes: version.disk_usage_bytes });
        result.reclaimed_bytes += version.disk_usage_bytes;
      }
    }
    return result;
  }

  /** Renamed aside first, so nothing ever sees a half-deleted version (or image) under its own name. */
  private async discard(dir: string): Promise<void> {
    const aside = join(this.store.dir, `.removing-${randomBytes(6).toString("hex")}`);
    await rename(dir, aside);
    await rm(aside, { recursive: true, force: true });
  }
}
