// Telling "the disk is full" apart from other failures, whichever layer reported it: a system call (ENOSPC,
// EDQUOT), SQLite (SQLITE_FULL), or a program we ran (qemu-img, QEMU) that printed the system's message.
// A full disk is the host's condition, not a bug: it is answered 507 `insufficient_storage`, never 500.
import { CorralError } from "../protocol/errors.ts";

const ERRNO_CODES = new Set(["ENOSPC", "EDQUOT"]);
const SQLITE_CODES = new Set(["SQLITE_FULL"]);
/** What strerror(3) says for ENOSPC and EDQUOT, as programs print it. */
const MESSAGES = /No space left on device|Disk quota exceeded/i;

/** The system's words for the failure when `err` (or anything in its cause chain) is a full disk. */
export function storageFullReason(err: unknown): string | undefined {
  const seen = new Set<unknown>();
  for (let current = err; current !== undefined && current !== null && !seen.has(current); current = (current as { cause?: unknown }).cause) {
    seen.add(current);
    if (typeof current !== "object") break;
    // Already classified (a guest's own full disk is a 507 about the guest, not the host).
    if (current instanceof CorralError) return undefined;
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string" && ERRNO_CODES.has(code)) return code === "EDQUOT" ? "Disk quota exceeded" : "No space left on device";
    if (typeof code === "string" && SQLITE_CODES.has(code)) return "No space left on device";
    const text = [(current as { message?: unknown }).message, (current as { stderr?: unknown }).stderr].filter((t) => typeof t === "string").join("\n");
    const match = MESSAGES.exec(text);
    if (match) return match[0];
  }
  return undefined;
}

export function isStorageFull(err: unknown): boolean {
  return storageFullReason(err) !== undefined;
}

/**
 * A 507 naming what was being written and where, when `err` is a full disk; otherwise undefined. `dir` is the
 * folder whose filesystem ran out (the daemon's state directory, usually).
 */
export function storageFullError(err: unknown, what: string, dir: string): CorralError | undefined {
  const reason = storageFullReason(err);
  if (reason === undefined) return undefined;
  return new CorralError("insufficient_storage", `Cannot write ${what}: the filesystem of ${dir} is full (${reason}); free space there and retry`, { cause: err });
}
