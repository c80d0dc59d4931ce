// Each VM boots from a qcow2 overlay on its image's read-only root filesystem: an instant copy-on-write
// clone; deleting the VM deletes the overlay and leaves the image untouched.
import { requireProgram, run } from "../util/run.ts";
import type { ImageVersion } from "./image-store.ts";

export async function createOverlay(image: ImageVersion, overlayPath: string): Promise<void> {
  const qemuImg = requireProgram("qemu-img", "qemu-utils");
  await run(qemuImg, ["create", "-q", "-f", "qcow2", "-F", image.rootfsFormat, "-b", image.rootfs, overlayPath]);
}
