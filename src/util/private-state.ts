// A state directory holds secrets: API tokens, the SQLite databases (daemons' tokens; VMs' ssh_keys and
// userdata), stored secrets, guest disks. New files are made private, but a directory left by an older
// version, restored from a backup or made by hand may be open to every user. At start each server closes
// it: the directory 0700, every file at its top and in its secret folders without group or other bits, its
// folders 0700. Only bits are removed (a 0400 file stays 0400); symbolic links are left alone.
import { closeSync, openSync } from "node:fs";
import { chmod, lstat, readdir } from "node:fs/promises";
import { join } from "node:path";

/** Folders whose every file is a secret (the daemon's token and stored secrets). */
const SECRET_FOLDERS = ["auth", "secrets"] as const;

async function tighten(path: string, changed: string[]): Promise<void> {
  const info = await lstat(path).catch(() => undefined);
  if (!info || info.isSymbolicLink()) return;
  const mode = info.mode & 0o7777;
  const wanted = info.isDirectory() ? 0o700 : mode & ~0o077;
  if (mode === wanted) return;
  await chmod(path, wanted);
  changed.push(path);
}

/**
 * Makes `stateDir` private (see above); returns what it changed, for the log. The directory must exist.
 */
export async function tightenStateDir(stateDir: string): Promise<string[]> {
  const changed: string[] = [];
  await tighten(stateDir, changed);
  for (const entry of await readdir(stateDir)) {
    const path = join(stateDir, entry);
    await tighten(path, changed);
    if (!(SECRET_FOLDERS as readonly string[]).includes(entry)) continue;
    const inner = await readdir(path).catch(() => []);
    for (const name of inner) await tighten(join(path, name), changed);
  }
  return changed;
}

/**
 * Creates `file` empty with mode 0600 if it does not exist, so that the first open by a library that creates
 * with the process's umask (SQLite) finds it private. SQLite gives its -wal and -shm files the mode of the
 * database.
 */
export function createPrivateFile(file: string): void {
  closeSync(openSync(file, "a", 0o600));
}
