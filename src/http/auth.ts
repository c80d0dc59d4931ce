// Bearer tokens: generated on first start into a 0600 file, read from the Authorization header, compared in
// constant time. Which routes need one is decided in access.ts.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";

export function tokenFile(stateDir: string): string {
  return join(stateDir, "auth", "token");
}

/** Reads the token, creating it (and its 0700 folder) on first use; the file is always left at 0600. */
export async function ensureToken(file: string): Promise<string> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  await chmod(dirname(file), 0o700);
  if (!existsSync(file)) await writeFile(file, `${randomBytes(32).toString("hex")}\n`, { mode: 0o600, flag: "wx" }).catch(() => undefined);
  await chmod(file, 0o600);
  const token = (await readFile(file, "utf8")).trim();
  if (token.length < 16) throw new Error(`The token in ${file} is too short: delete the file to have a new one made`);
  return token;
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}

/** Constant-time comparison (hashing first makes the lengths equal). */
export function tokensMatch(presented: string, expected: string): boolean {
  return timingSafeEqual(digest(presented), digest(expected));
}

export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer\s+(.*)$/i.exec(header);
  return match ? (match[1] ?? "").trim() : undefined;
}
