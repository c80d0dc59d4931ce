// Each VM boots from a qcow2 overlay on its image's read-only root filesystem: an instant copy-on-write
// clone; deleting the VM deletes the overlay and leaves the image untouched. A clone of a template gets an
// overlay on the template's frozen disk instead (itself an overlay on the image).
import { requireProgram, run } from "../util/run.ts";
import type { DiskFormat, ImageVersion } from "./image-store.ts";

export function createOverlay(image: ImageVersion, overlayPath: string): Promise<void> {
  return createOverlayOn(image.rootfs, image.rootfsFormat, overlayPath);
}

export async function createOverlayOn(backingFile: string, backingFormat: DiskFormat, overlayPath: string): Promise<void> {
  const qemuImg = requireProgram("qemu-img", "qemu-utils");
  await run(qemuImg, ["create", "-q", "-f", "qcow2", "-F", backingFormat, "-b", backingFile, overlayPath]);
}
