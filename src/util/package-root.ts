// Where Corral's own files are: the checkout (run from src/ through tsx) or the installed package (run from
// its built dist/). Both have package.json named "corral" at the top; the code finds it by walking up from
// the running module, so that a path to a shipped file (the dashboard, the guest agent's native source, the
// bootstrap script) is right whichever layout runs.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === "corral") return dir;
      } catch {
        // not ours: keep walking
      }
    }
    if (dirname(dir) === dir) throw new Error(`Cannot find Corral's package.json above ${start}`);
  }
}

/** The folder that holds Corral's package.json (with a trailing separator left off). */
export const PACKAGE_ROOT = findRoot(dirname(fileURLToPath(import.meta.url)));

/** A path inside Corral's package. */
export function packagePath(...parts: string[]): string {
  return join(PACKAGE_ROOT, ...parts);
}

/** Running from a checkout (sources present, tsx) rather than from the built package? */
export const FROM_SOURCES = existsSync(packagePath("src", "cli", "main.ts"));
