// Each VM boots from a qcow2 overlay on its image's read-only root filesystem: an instant copy-on-write
// clone; deleting the VM deletes the overlay and leaves the image untouched. A clone of a template gets an
// overlay on the template's frozen disk instead (itself an overlay on the image).
import { stat } from "node:fs/promises";
import { requireProgram, run } from "../util/run.ts";
import type { DiskFormat, ImageVersion } from "./image-store.ts";

const MiB = 1024 * 1024;

/** An overlay on the image; with `sizeMiB` larger than the image, the guest sees a disk of that size. */
export async function createOverlay(image: ImageVersion, overlayPath: string, sizeMiB?: number): Promise<void> {
  const grow = sizeMiB !== undefined && sizeMiB > (await imageSizeMiB(image));
  return createOverlayOn(image.rootfs, image.rootfsFormat, overlayPath, grow ? sizeMiB : undefined);
}

/** The size of the image's disk as the guest sees it, MiB. */
export async function imageSizeMiB(image: Pick<ImageVersion, "rootfs" | "rootfsFormat">): Promise<number> {
  if (image.rootfsFormat === "raw") return Math.floor((await stat(image.rootfs)).size / MiB);
  const info = JSON.parse(await run(requireProgram("qemu-img", "qemu-utils"), ["info", "--output=json", image.rootfs])) as { "virtual-size": number };
  return Math.floor(info["virtual-size"] / MiB);
}

export async function createOverlayOn(backingFile: string, backingFormat: DiskFormat, overlayPath: string, sizeMiB?: number): Promise<void> {
  const qemuImg = requireProgram("qemu-img", "qemu-utils");
  const size = sizeMiB === undefined ? [] : [`${sizeMiB}M`];
  await run(qemuImg, ["create", "-q", "-f", "qcow2", "-F", backingFormat, "-b", backingFile, overlayPath, ...size]);
}
