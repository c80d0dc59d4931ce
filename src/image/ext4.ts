// Turns a staged root filesystem folder into an ext4 image with `mkfs.ext4 -d`: no mounting, no loop devices.
import { requireProgram, run } from "../util/run.ts";

/** `size` as mkfs takes it ("4G"): the disk the guest sees; the file stays sparse on the host. */
export async function buildExt4(stagingDir: string, outputFile: string, size: string): Promise<void> {
  const mkfs = requireProgram("mkfs.ext4", "e2fsprogs");
  await run(mkfs, ["-q", "-F", "-t", "ext4", "-L", "corral-root", "-E", "root_owner=0:0", "-d", stagingDir, outputFile, size]);
}
