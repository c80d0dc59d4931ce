// Paths as the host sends them, made absolute: `~` is a user's home (root's unless a uid says otherwise) and
// a relative path starts at `/`, the agent's working directory.
import { isAbsolute, resolve } from "node:path";
import { AgentRouteError } from "../http.ts";
import { lookupUser } from "../users.ts";

export function resolveGuestPath(path: unknown, field = "path", uid = 0): string {
  if (typeof path !== "string" || path.length === 0) throw new AgentRouteError(400, "invalid_request", `Missing ${field}: name a path in the guest`);
  if (path.includes("\0")) throw new AgentRouteError(400, "invalid_request", `Invalid ${field} ${JSON.stringify(path)}: it contains a NUL byte`);
  if (path === "~" || path.startsWith("~/")) {
    const home = lookupUser(uid)?.home ?? (uid === 0 ? "/root" : "/");
    return resolve(home, path.slice(2));
  }
  return isAbsolute(path) ? resolve(path) : resolve("/", path);
}
