// Paths inside a staged root filesystem, resolved as the guest would see them. An image's symlinks may point
// anywhere (an OCI layer is untrusted input): `/lib -> /usr/lib` must land in the staged root's usr/lib, and
// `/etc -> /../../host` must never reach the host's own files. Every write the runtime makes into a root goes
// through inRoot().
import { lstatSync, readlinkSync } from "node:fs";
import { join, posix, resolve } from "node:path";

const MAX_SYMLINKS = 40;

/**
 * The host path of `guestPath` inside `root`, following symlinks as if `root` were `/` (like chroot), so the
 * result is always under `root`. Components that do not exist yet are kept as they are.
 */
export function inRoot(rootDir: string, guestPath: string): string {
  const root = resolve(rootDir);
  const pending = guestPath.split("/").filter((c) => c.length > 0);
  const resolved: string[] = [];
  let followed = 0;
  while (pending.length > 0) {
    const part = pending.shift() as string;
    if (part === ".") continue;
    if (part === "..") {
      resolved.pop();
      continue;
    }
    const host = join(root, ...resolved, part);
    let isLink = false;
    try {
      isLink = lstatSync(host).isSymbolicLink();
    } catch {
      isLink = false;
    }
    if (!isLink) {
      resolved.push(part);
      continue;
    }
    if (++followed > MAX_SYMLINKS) throw new Error(`Too many symbolic links resolving ${JSON.stringify(guestPath)} in the image`);
    const target = readlinkSync(host);
    if (target.startsWith("/")) resolved.length = 0;
    pending.unshift(...target.split("/").filter((c) => c.length > 0));
  }
  return join(root, ...resolved);
}

/** The guest's own absolute path for `guestPath` after resolving its symlinks in `root`. */
export function resolveGuestPath(root: string, guestPath: string): string {
  const host = inRoot(root, guestPath);
  return posix.join("/", host.slice(resolve(root).length));
}
