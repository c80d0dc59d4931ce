// The set-up step that builds the web dashboard (web/ → web/dist, which the controller serves at /) when
// web/dist/index.html is missing or older than a source it is built from. Idempotent: a second run only checks.
import { spawn } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Progress } from "../image/progress.ts";
import { CommandError } from "../util/run.ts";

import { PACKAGE_ROOT } from "../util/package-root.ts";

/** What the bundle is built from: the app, the wire types and shell frames it imports, the pinned packages. */
export function webSources(root: string): string[] {
  return [join(root, "web"), join(root, "src", "protocol"), join(root, "package-lock.json")];
}

/** The newest modification time (ms) of the files under `paths`, skipping web/dist and node_modules. */
export function newestMtime(paths: readonly string[]): number {
  let newest = 0;
  const visit = (path: string): void => {
    const info = statSync(path, { throwIfNoEntry: false });
    if (!info) return;
    if (!info.isDirectory()) {
      newest = Math.max(newest, info.mtimeMs);
      return;
    }
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      if (entry.name.startsWith("dist") || entry.name === "node_modules") continue;
      visit(join(path, entry.name));
    }
  };
  for (const path of paths) visit(path);
  return newest;
}

/** Whether web/dist must be (re)built: no index.html, or a source newer than it (web/dist* is output, skipped). */
export function dashboardIsStale(root: string): boolean {
  const index = statSync(join(root, "web", "dist", "index.html"), { throwIfNoEntry: false });
  return !index || newestMtime(webSources(root)) > index.mtimeMs;
}

export async function ensureDashboard(progress: Progress, root: string = PACKAGE_ROOT): Promise<void> {
  if (!dashboardIsStale(root)) {
    progress.skip("web dashboard is built (web/dist)");
    return;
  }
  progress.step("building the web dashboard (web/dist)");
  await buildDashboard(root);
  progress.done("built the web dashboard (web/dist)");
}

/**
 * Builds into a directory of its own, then swaps it in for web/dist: a controller serving web/dist, or a
 * second set-up building at the same time, never sees half a build.
 */
export async function buildDashboard(root: string = PACKAGE_ROOT): Promise<void> {
  const web = join(root, "web");
  const [fresh, old] = [join(web, `dist.build-${process.pid}`), join(web, `dist.old-${process.pid}`)];
  try {
    await runVite(root, fresh);
    await rename(join(web, "dist"), old).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "ENOENT") throw err;
    });
    await rename(fresh, join(web, "dist"));
  } finally {
    await Promise.all([rm(fresh, { recursive: true, force: true }), rm(old, { recursive: true, force: true })]);
  }
}

/** Runs `vite build web` with this Node (as `npm run build:web` does), into `outDir`. */
function runVite(root: string, outDir: string): Promise<void> {
  const vite = join(root, "node_modules", "vite", "bin", "vite.js");
  const args = [vite, "build", "web", "--outDir", outDir, "--emptyOutDir", "--logLevel", "warn"];
  const command = ["node", ...args].join(" ");
  if (!existsSync(vite)) return Promise.reject(new CommandError(command, null, `${vite} is missing: run npm ci first`));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const keep = (chunk: Buffer) => (output = (output + chunk.toString("utf8")).slice(-64 * 1024));
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.once("error", (cause) => reject(new CommandError(command, null, output, cause)));
    child.once("close", (code) => (code === 0 ? resolve() : reject(new CommandError(command, code, output))));
  });
}
