// This host's id for fleet controllers: generated once, kept in STATE_DIR/host-id, so a daemon restarted on
// the same state is the same host to them.
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

const HOST_ID_PATTERN = /^h-[0-9a-f]{12}$/;

export async function loadHostId(stateDir: string): Promise<string> {
  const file = join(stateDir, "host-id");
  const existing = (await readFile(file, "utf8").catch(() => "")).trim();
  if (HOST_ID_PATTERN.test(existing)) return existing;
  const id = `h-${randomBytes(6).toString("hex")}`;
  await writeFile(file, `${id}\n`, { mode: 0o600 });
  return id;
}
