// Secrets inside the guest: files under /run/corral/secrets (a tmpfs, so never on the VM's disk), each
// written whole to a temporary file and renamed into place, so a reader sees the old or the new secret,
// never half of one. The host lists what is here (with digests) and sends only what differs.
import { createHash } from "node:crypto";
import { kernelRandomBytes } from "./random.ts";
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statfsSync, type Stats } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import type { ServerHttp2Stream } from "node:http2";
import { GUEST_SECRETS_DIR, MAX_SECRET_BYTES, SECRET_META_HEADER, isSecretName, type GuestSecretEntry, type GuestSecretMeta } from "../protocol/secrets.ts";
import { AgentRouteError, jsonHeader, sendJson } from "./http.ts";
import type { AgentRouter } from "./router.ts";

const TMPFS_MAGIC = 0x01021994;
const TEMP_PREFIX = ".tmp-";

function checkName(name: string): string {
  if (!isSecretName(name)) throw new AgentRouteError(400, "invalid_name", `Invalid secret name ${JSON.stringify(name)}`);
  return name;
}

function checkMeta(meta: GuestSecretMeta): GuestSecretMeta {
  const id = (v: unknown): boolean => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 4294967294;
  if (typeof meta?.permissions !== "string" || !/^0[0-7]{3}$/.test(meta.permissions) || !id(meta.uid) || !id(meta.gid)) {
    throw new AgentRouteError(400, "invalid_request", `Header ${SECRET_META_HEADER} must hold permissions ("0600"), uid and gid`);
  }
  return meta;
}

function modeText(stats: Stats): string {
  return `0${(stats.mode & 0o777).toString(8).padStart(3, "0")}`;
}

export class GuestSecrets {
  private prepared = false;

  constructor(
    readonly dir: string = GUEST_SECRETS_DIR,
    /** Refuse to write unless the folder is on a tmpfs (tests on a host may turn this off). */
    private readonly requireTmpfs = true,
  ) {}

  /** What is here now: regular files with valid names (temporary files and anything odd are skipped). */
  list(): GuestSecretEntry[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    const entries: GuestSecretEntry[] = [];
    for (const name of names.sort()) {
      if (!isSecretName(name)) continue;
      const path = join(this.dir, name);
      try {
        const stats = lstatSync(path);
        if (!stats.isFile()) continue;
        const data = readFileSync(path);
        entries.push({ name, size: data.length, sha256: createHash("sha256").update(data).digest("hex"), permissions: modeText(stats), uid: stats.uid, gid: stats.gid });
      } catch {
        // removed meanwhile
      }
    }
    return entries;
  }

  /** Writes the secret atomically with its owner and mode. */
  async put(name: string, meta: GuestSecretMeta, data: Buffer): Promise<void> {
    this.prepare();
    const temp = join(this.dir, `${TEMP_PREFIX}${kernelRandomBytes(6).toString("hex")}`);
    const file = await open(temp, "wx", 0o600);
    try {
      await file.writeFile(data);
      await file.chown(meta.uid, meta.gid);
      await file.chmod(Number.parseInt(meta.permissions, 8));
    } catch (err) {
      await file.close();
      rmSync(temp, { force: true });
      throw err;
    }
    await file.close();
    renameSync(temp, join(this.dir, name));
  }

  remove(name: string): boolean {
    const path = join(this.dir, name);
    try {
      if (!lstatSync(path).isFile()) return false;
    } catch {
      return false;
    }
    rmSync(path, { force: true });
    return true;
  }

  /** The folder exists (root's, 0755: each secret's own mode decides who reads it) on a tmpfs. */
  private prepare(): void {
    if (this.prepared) return;
    mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    chmodSync(this.dir, 0o755);
    if (this.requireTmpfs && statfsSync(this.dir).type !== TMPFS_MAGIC) {
      throw new AgentRouteError(409, "conflict", `Cannot write secrets to ${this.dir}: it is not on a tmpfs, and secrets never go to the VM's disk`);
    }
    // Leftovers of an earlier agent's interrupted writes (once: later temporary files are in-flight writes).
    for (const entry of readdirSync(this.dir)) if (entry.startsWith(TEMP_PREFIX)) rmSync(join(this.dir, entry), { force: true });
    this.prepared = true;
  }
}

function readBody(stream: ServerHttp2Stream, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        reject(new AgentRouteError(413, "payload_too_large", `A secret is at most ${limit} bytes`));
        stream.destroy();
        return;
      }
      chunks.push(chunk);
    });
    stream.on("end", () => resolve(Buffer.concat(chunks)));
    stream.on("error", reject);
  });
}

export function registerSecretRoutes(router: AgentRouter, secrets: GuestSecrets): void {
  router.add("GET", "/v1/secrets", ({ stream }) => sendJson(stream, 200, secrets.list()));

  router.add("PUT", "/v1/secrets/:name", async ({ stream, params, headers }) => {
    const name = checkName(params.name as string);
    const meta = checkMeta(jsonHeader<GuestSecretMeta>(headers[SECRET_META_HEADER], SECRET_META_HEADER));
    await secrets.put(name, meta, await readBody(stream, MAX_SECRET_BYTES));
    sendJson(stream, 200, { name });
  });

  router.add("DELETE", "/v1/secrets/:name", ({ stream, params }) => {
    const name = checkName(params.name as string);
    sendJson(stream, 200, { name, removed: secrets.remove(name) });
  });
}
