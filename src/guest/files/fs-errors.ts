// Filesystem failures as the agent answers them: an errno becomes a status and a code from the catalogue, with
// a message that says what could not be done to which path.
import { MalformedArchiveError, UnsafeEntryError } from "../../archive/index.ts";
import { AgentRouteError } from "../http.ts";

const ERRNO: Record<string, { status: number; code: string; reason: string }> = {
  ENOENT: { status: 404, code: "file_not_found", reason: "it does not exist" },
  ENOTDIR: { status: 400, code: "invalid_request", reason: "a part of the path is not a directory" },
  EISDIR: { status: 400, code: "invalid_request", reason: "it is a directory" },
  EEXIST: { status: 409, code: "file_exists", reason: "it already exists" },
  ENOTEMPTY: { status: 409, code: "directory_not_empty", reason: "the directory is not empty (use recursive=true)" },
  EACCES: { status: 403, code: "forbidden", reason: "permission denied" },
  EPERM: { status: 403, code: "forbidden", reason: "the operation is not permitted" },
  EROFS: { status: 403, code: "forbidden", reason: "the filesystem is read-only" },
  ENOSPC: { status: 507, code: "insufficient_storage", reason: "the guest's disk is full" },
  EDQUOT: { status: 507, code: "insufficient_storage", reason: "the disk quota is exhausted" },
  ENAMETOOLONG: { status: 400, code: "invalid_request", reason: "the name is too long" },
  ELOOP: { status: 400, code: "invalid_request", reason: "it has too many levels of symbolic links" },
  EBUSY: { status: 409, code: "conflict", reason: "it is in use" },
  EXDEV: { status: 400, code: "invalid_request", reason: "it is on another filesystem" },
};

/** Turns what a filesystem operation threw into the agent's answer: "Cannot ACTION "PATH": REASON". */
export function fsError(err: unknown, action: string, path: string): AgentRouteError {
  if (err instanceof AgentRouteError) return err;
  if (err instanceof UnsafeEntryError || err instanceof MalformedArchiveError) {
    return new AgentRouteError(400, "invalid_request", err.message); // names the entry, or the archive's flaw
  }
  const code = (err as NodeJS.ErrnoException).code;
  const known = code ? ERRNO[code] : undefined;
  if (known) return new AgentRouteError(known.status, known.code, `Cannot ${action} ${JSON.stringify(path)}: ${known.reason}`);
  return new AgentRouteError(500, "internal", `Cannot ${action} ${JSON.stringify(path)}: ${(err as Error).message}`);
}
