// Which image versions are in use, read from the disks themselves. Several daemons may share one host's
// image store (each with its own state folder), so "in use" cannot come from one daemon's records: each
// daemon registers its state folder in the store (images/.users/HASH.json), and a scan reads the qcow2
// header of every disk below each registered folder (VMs, templates, commits, and the ones being built),
// following its chain of backing files down to an image's rootfs. A version is in use while any such chain
// ends in it, whichever daemon owns the disk and whether that daemon runs or not (a stopped daemon's VMs
// start again). A registration whose state folder is gone is dropped by the scan.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, open, readdir, readFile, realpath, rm, writeFile, type FileHandle } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";

/** What uses an image version: a disk of a VM, a template or a commit, in one daemon's state folder. */
export interface ImageUse {
  kind: "vm" | "template" | "commit";
  /** The VM's hostname, the template's or the commit's id. */
  id: string;
  state_dir: string;
  /** True while the disk belongs to something still being made (a template build, a commit). */
  in_making: boolean;
}

const USERS_DIR = ".users";
const KIND_DIRS: ReadonlyArray<[string, ImageUse["kind"]]> = [
  ["vms", "vm"],
  ["templates", "template"],
  ["commits", "commit"],
];
const QCOW2_MAGIC = 0x514649fb;
const MAX_CHAIN = 16;

function userFile(imagesDir: string, stateDir: string): string {
  return join(imagesDir, USERS_DIR, `${createHash("sha256").update(resolve(stateDir)).digest("hex").slice(0, 16)}.json`);
}

/** A daemon says its disks may use this store's images (idempotent; called when the daemon starts). */
export async function registerImageUser(imagesDir: string, stateDir: string): Promise<void> {
  const file = userFile(imagesDir, stateDir);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify({ state_dir: resolve(stateDir), registered_at: new Date().toISOString() })}\n`);
}

async function registeredStateDirs(imagesDir: string): Promise<string[]> {
  const dir = join(imagesDir, USERS_DIR);
  if (!existsSync(dir)) return [];
  const found: string[] = [];
  for (const entry of await readdir(dir)) {
    if (!entry.endsWith(".json")) continue;
    const file = join(dir, entry);
    let stateDir: unknown;
    try {
      stateDir = (JSON.parse(await readFile(file, "utf8")) as { state_dir?: unknown }).state_dir;
    } catch {
      stateDir = undefined;
    }
    if (typeof stateDir !== "string" || !existsSync(stateDir)) {
      await rm(file, { force: true }); // dangling: that daemon's state is gone, and its disks with it
      continue;
    }
    found.push(stateDir);
  }
  return found;
}

/** The backing file a qcow2 names (absolute), or undefined for a file that is not qcow2 or has none. */
export async function qcow2Backing(path: string): Promise<string | undefined> {
  let handle: FileHandle;
  try {
    handle = await open(path, "r");
  } catch {
    return undefined;
  }
  try {
    const header = Buffer.alloc(20);
    const { bytesRead } = await handle.read(header, 0, 20, 0);
    if (bytesRead < 20 || header.readUInt32BE(0) !== QCOW2_MAGIC) return undefined;
    const offset = Number(header.readBigUInt64BE(8));
    const size = header.readUInt32BE(16);
    if (offset === 0 || size === 0 || size > 4096) return undefined;
    const name = Buffer.alloc(size);
    await handle.read(name, 0, size, offset);
    const backing = name.toString("utf8");
    return isAbsolute(backing) ? backing : resolve(dirname(path), backing);
  } finally {
    await handle.close();
  }
}

/** "NAME/VERSION" of the image version a disk's chain ends in, if any. */
async function versionOf(disk: string, imagesRoot: string): Promise<string | undefined> {
  let current = disk;
  for (let depth = 0; depth < MAX_CHAIN; depth++) {
    const backing = await qcow2Backing(current);
    if (!backing) break;
    current = await realpath(backing).catch(() => backing);
  }
  const rel = relative(imagesRoot, current);
  const parts = rel.split(sep);
  // NAME/versions/VERSION/rootfs.ext4
  if (parts.length === 4 && parts[1] === "versions" && !rel.startsWith("..")) return `${parts[0]}/${parts[2]}`;
  return undefined;
}

/** Every use of every version, keyed "NAME/VERSION". */
export async function scanImageUses(imagesDir: string): Promise<Map<string, ImageUse[]>> {
  const uses = new Map<string, ImageUse[]>();
  if (!existsSync(imagesDir)) return uses;
  const imagesRoot = await realpath(imagesDir);
  for (const stateDir of await registeredStateDirs(imagesDir)) {
    for (const [folder, kind] of KIND_DIRS) {
      const dir = join(stateDir, folder);
      if (!existsSync(dir)) continue;
      for (const entry of await readdir(dir).catch(() => [] as string[])) {
        const key = await versionOf(join(dir, entry, "disk.qcow2"), imagesRoot);
        if (!key) continue;
        const inMaking = entry.startsWith(".");
        const use: ImageUse = { kind, id: inMaking ? entry.replace(/^\.[a-z]-/, "") : entry, state_dir: stateDir, in_making: inMaking };
        uses.set(key, [...(uses.get(key) ?? []), use]);
      }
    }
  }
  return uses;
}
