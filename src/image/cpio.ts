// A writer for the "newc" cpio format the kernel unpacks as initramfs. Building the archive in memory
// (a few MiB) lets us add device nodes and set owners without root or a staging tree.

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

interface Entry {
  name: string;
  mode: number;
  data: Buffer;
  rdevMajor: number;
  rdevMinor: number;
}

export class CpioArchive {
  private readonly entries: Entry[] = [];
  private readonly names = new Set<string>();

  directory(name: string, permissions = 0o755): this {
    return this.add({ name, mode: S_IFDIR | permissions, data: Buffer.alloc(0), rdevMajor: 0, rdevMinor: 0 });
  }

  file(name: string, data: Buffer | string, permissions = 0o644): this {
    return this.add({ name, mode: S_IFREG | permissions, data: Buffer.from(data), rdevMajor: 0, rdevMinor: 0 });
  }

  symlink(name: string, target: string): this {
    return this.add({ name, mode: S_IFLNK | 0o777, data: Buffer.from(target), rdevMajor: 0, rdevMinor: 0 });
  }

  characterDevice(name: string, major: number, minor: number, permissions = 0o600): this {
    return this.add({ name, mode: S_IFCHR | permissions, data: Buffer.alloc(0), rdevMajor: major, rdevMinor: minor });
  }

  /** The archive, ending with the TRAILER!!! entry. Entries keep the order they were added in. */
  toBuffer(): Buffer {
    const parts: Buffer[] = [];
    let ino = 1;
    for (const entry of this.entries) parts.push(...encode(entry, ino++));
    parts.push(...encode({ name: "TRAILER!!!", mode: 0, data: Buffer.alloc(0), rdevMajor: 0, rdevMinor: 0 }, 0));
    return Buffer.concat(parts);
  }

  private add(entry: Entry): this {
    const name = entry.name.replace(/^\/+/, "");
    if (name.length === 0 || name.split("/").includes("..")) throw new Error(`Invalid cpio entry name ${JSON.stringify(entry.name)}`);
    if (this.names.has(name)) throw new Error(`Duplicate cpio entry ${JSON.stringify(name)}`);
    this.names.add(name);
    this.entries.push({ ...entry, name });
    return this;
  }
}

function hex8(value: number): string {
  return value.toString(16).padStart(8, "0");
}

function padding(length: number): Buffer {
  return Buffer.alloc((4 - (length % 4)) % 4);
}

function encode(entry: Entry, ino: number): Buffer[] {
  const name = Buffer.from(`${entry.name}\0`);
  const isDir = (entry.mode & 0o170000) === S_IFDIR;
  const header = `070701${[ino, entry.mode, 0, 0, isDir ? 2 : 1, 0, entry.data.length, 0, 0, entry.rdevMajor, entry.rdevMinor, name.length, 0].map(hex8).join("")}`;
  const head = Buffer.concat([Buffer.from(header, "ascii"), name]);
  return [head, padding(head.length), entry.data, padding(entry.data.length)];
}
