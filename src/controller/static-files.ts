// The dashboard's built files (web/dist by default): finding the file a URL path names without ever leaving
// the root, and how each is served (its content type and caching). The routes are in routes/dashboard.ts.
import { realpath, stat } from "node:fs/promises";
import { extname, resolve, sep } from "node:path";
import { packagePath } from "../util/package-root.ts";
import { CorralError } from "../protocol/errors.ts";

/** `npm run build:web` writes the dashboard here (the repository's web/dist). */
export const DEFAULT_WEB_ROOT = packagePath("web", "dist");

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json; charset=utf-8",
  ".woff2": "font/woff2",
  ".map": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
};

/** Hashed names never change content; everything else (index.html first) is checked on every use. */
const IMMUTABLE = "public, max-age=31536000, immutable";
const REVALIDATE = "no-cache";

export interface StaticFile {
  path: string;
  size: number;
  contentType: string;
  cacheControl: string;
}

export class StaticRoot {
  constructor(readonly dir: string) {}

  /** index.html, or undefined when the dashboard has not been built. */
  index(): Promise<StaticFile | undefined> {
    return this.find("/index.html");
  }

  /**
   * The regular file that the URL path (still percent-encoded) names under the root, or undefined. A path
   * that tries to leave the root (a ".." segment, NUL, a bad escape) is refused with 400; a symbolic link
   * that points out of the root is as good as missing.
   */
  async find(urlPath: string): Promise<StaticFile | undefined> {
    const relative = decodePath(urlPath);
    let root: string;
    try {
      root = await realpath(this.dir);
    } catch {
      return undefined;
    }
    const candidate = resolve(root, `.${relative}`);
    if (!isInside(root, candidate)) return undefined;
    try {
      const real = await realpath(candidate);
      if (!isInside(root, real)) return undefined;
      const info = await stat(real);
      if (!info.isFile()) return undefined;
      return {
        path: real,
        size: info.size,
        contentType: CONTENT_TYPES[extname(real).toLowerCase()] ?? "application/octet-stream",
        cacheControl: relative.startsWith("/assets/") ? IMMUTABLE : REVALIDATE,
      };
    } catch {
      return undefined;
    }
  }
}

/** "/a%20b/c.js" -> "/a b/c.js"; refuses what could name something outside the root. */
function decodePath(urlPath: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    throw new CorralError("invalid_request", `Invalid path ${JSON.stringify(urlPath)}: it is not valid percent-encoding`);
  }
  if (decoded.includes("\0") || decoded.split(/[/\\]/).includes("..")) {
    throw new CorralError("invalid_request", `Invalid path ${JSON.stringify(urlPath)}: it must not contain ".." segments or NUL`);
  }
  return decoded.startsWith("/") ? decoded : `/${decoded}`;
}

function isInside(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : `${root}${sep}`);
}
