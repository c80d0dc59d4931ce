// The daemon's secrets on disk: STATE_DIR/secrets/ (0700), one 0600 file per secret holding a JSON header
// line (mode, owner, size, digest, time) and then the raw bytes. Every write goes to a temporary file that
// is synced and renamed over the old one, so a crash leaves the old secret or the new one, never a mix.
// Headers are kept in memory; data is read only to deliver it.
import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { CorralError } from "../../protocol/errors.ts";
import { MAX_SECRETS, MAX_TOTAL_SECRET_BYTES, assertSecretName, isSecretName, type SecretInfo } from "../../protocol/secrets.ts";
import { KeyedLock } from "../../util/keyed-lock.ts";
import { storageFullError } from "../../util/storage-full.ts";
import type { Logger } from "../../util/log.ts";

export interface SecretHeader {
  name: string;
  permissions: string;
  uid: number;
  gid: number;
  size: number;
  sha256: string;
  modified_at: string;
}

export interface SecretChange {
  data?: Buffer;
  permissions?: string;
  uid?: number;
  gid?: number;
}

const TEMP_PREFIX = ".tmp-";
/** A header is one short JSON line; anything longer means the file is not ours. */
const MAX_HEADER = 4096;

export function secretInfo(header: SecretHeader): SecretInfo {
  const { name, size, permissions, uid, gid, modified_at } = header;
  return { name, size, permissions, uid, gid, modified_at, mod_time: modified_at };
}

export class SecretStore {
  private readonly headers = new Map<string, SecretHeader>();
  private readonly lock = new KeyedLock();
  private changes = 0;

  private constructor(readonly dir: string) {}

  /** Opens (creating) the folder, removes leftovers of interrupted writes and reads every header. */
  static async open(dir: string, log: Logger): Promise<SecretStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    const store = new SecretStore(dir);
    for (const entry of (await readdir(dir)).sort()) {
      if (entry.startsWith(TEMP_PREFIX)) {
        await rm(join(dir, entry), { force: true });
        continue;
      }
      if (!isSecretName(entry)) continue;
      try {
        store.headers.set(entry, await readHeader(join(dir, entry), entry));
      } catch (err) {
        // Kept on disk for a person to look at, but not served: nothing is deleted on a guess.
        log.error({ file: join(dir, entry), err }, "Cannot read a stored secret: leaving it out");
      }
    }
    return store;
  }

  /** Counts every change, so a delivery can tell whether it saw the latest state. */
  get generation(): number {
    return this.changes;
  }

  list(): SecretHeader[] {
    return [...this.headers.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): SecretHeader {
    assertSecretName(name);
    const header = this.headers.get(name);
    if (!header) throw new CorralError("secret_not_found", `Secret ${JSON.stringify(name)} does not exist`);
    return header;
  }

  /** The secret's bytes and the header they were written with. */
  async read(name: string): Promise<{ header: SecretHeader; data: Buffer }> {
    this.get(name);
    const raw = await readFile(join(this.dir, name));
    const newline = raw.indexOf(0x0a);
    const header = parseHeader(raw.subarray(0, newline).toString("utf8"), name);
    return { header, data: raw.subarray(newline + 1) };
  }

  async create(name: string, fields: Required<SecretChange>): Promise<SecretHeader> {
    assertSecretName(name);
    return this.lock.run("secrets", async () => {
      if (this.headers.has(name)) throw new CorralError("secret_exists", `Secret ${JSON.stringify(name)} already exists: change it with PATCH /secrets/${name}`);
      this.checkRoom(name, fields.data.length);
      return this.write(name, fields.data, { permissions: fields.permissions, uid: fields.uid, gid: fields.gid });
    });
  }

  /** Changes what is given; without data the stored bytes are kept as they are. */
  async update(name: string, change: SecretChange): Promise<SecretHeader> {
    return this.lock.run("secrets", async () => {
      const current = this.get(name);
      const data = change.data ?? (await this.read(name)).data;
      this.checkRoom(name, data.length);
      return this.write(name, data, { permissions: change.permissions ?? current.permissions, uid: change.uid ?? current.uid, gid: change.gid ?? current.gid });
    });
  }

  async remove(name: string): Promise<void> {
    return this.lock.run("secrets", async () => {
      this.get(name);
      await rm(join(this.dir, name), { force: true });
      this.headers.delete(name);
      this.changes++;
    });
  }

  private checkRoom(name: string, size: number): void {
    const others = this.list().filter((h) => h.name !== name);
    if (others.length + 1 > MAX_SECRETS) {
      throw new CorralError("resources_exceeded", `Cannot store more than ${MAX_SECRETS} secrets: remove some first`);
    }
    const total = others.reduce((sum, h) => sum + h.size, 0) + size;
    if (total > MAX_TOTAL_SECRET_BYTES) {
      throw new CorralError(
        "resources_exceeded",
        `Cannot store secret ${JSON.stringify(name)}: all secrets together would take ${total} bytes, over the limit of ${MAX_TOTAL_SECRET_BYTES} (every VM holds them in RAM)`,
      );
    }
  }

  private async write(name: string, data: Buffer, meta: Pick<SecretHeader, "permissions" | "uid" | "gid">): Promise<SecretHeader> {
    const header: SecretHeader = {
      name,
      ...meta,
      size: data.length,
      sha256: createHash("sha256").update(data).digest("hex"),
      modified_at: new Date().toISOString(),
    };
    const temp = join(this.dir, `${TEMP_PREFIX}${randomBytes(6).toString("hex")}`);
    try {
      const file = await open(temp, "wx", 0o600);
      try {
        await file.writeFile(Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), data]));
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temp, join(this.dir, name));
    } catch (err) {
      // Nothing half-written stays; the secret as it was before (if any) is untouched.
      await rm(temp, { force: true });
      throw storageFullError(err, `secret ${JSON.stringify(name)}`, this.dir) ?? err;
    }
    this.headers.set(name, header);
    this.changes++;
    return header;
  }
}

async function readHeader(path: string, name: string): Promise<SecretHeader> {
  const file = await open(path, "r");
  try {
    const buffer = Buffer.alloc(MAX_HEADER);
    const { bytesRead } = await file.read(buffer, 0, MAX_HEADER, 0);
    const newline = buffer.subarray(0, bytesRead).indexOf(0x0a);
    if (newline < 0) throw new Error("malformed header");
    return parseHeader(buffer.subarray(0, newline).toString("utf8"), name);
  } finally {
    await file.close();
  }
}

/** Errors say only "malformed": JSON.parse would quote the line, and in a foreign file that may be a secret. */
function parseHeader(line: string, name: string): SecretHeader {
  let header: SecretHeader;
  try {
    header = JSON.parse(line) as SecretHeader;
  } catch {
    throw new Error("malformed header");
  }
  if (header.name !== name || typeof header.permissions !== "string" || typeof header.sha256 !== "string" || !Number.isInteger(header.size)) {
    throw new Error("malformed header");
  }
  return header;
}
