// Compiles the guest agent's native addon (src/guest/native/corral-native.c) with the host's C compiler
// against the Node-API headers of the host's node: the guest runs that same node binary. The result is
// cached by the hash of the source and the node version, so an unchanged host compiles nothing.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, rename } from "node:fs/promises";
import { dirname, join } from "node:path";
import { packagePath } from "../util/package-root.ts";
import { requireProgram, run } from "../util/run.ts";

// Shipped in the package too: the addon is compiled on the host that builds the images.
export const NATIVE_SOURCE = packagePath("src", "guest", "native", "corral-native.c");

/** Where the Node-API headers of the running node are (`<prefix>/include/node`, as node-gyp finds them). */
export function nodeIncludeDir(): string {
  const dir = join(dirname(dirname(process.execPath)), "include", "node");
  if (!existsSync(join(dir, "node_api.h"))) {
    throw new Error(`Node-API headers not found in ${dir}: install the development headers of this Node.js (they come with the official and Debian builds)`);
  }
  return dir;
}

/** The compiled addon for this host's node, built into `cacheDir` when missing; returns its path. */
export async function buildGuestNative(cacheDir: string): Promise<string> {
  const source = await readFile(NATIVE_SOURCE);
  const hash = createHash("sha256").update(source).update(process.version).digest("hex").slice(0, 16);
  const output = join(cacheDir, `corral-native-${hash}.node`);
  if (existsSync(output)) return output;
  await mkdir(cacheDir, { recursive: true });
  const compiler = requireProgram("gcc", "gcc");
  const partial = `${output}.${process.pid}.tmp`;
  await run(compiler, ["-O2", "-Wall", "-Werror", "-shared", "-fPIC", "-pthread", "-I", nodeIncludeDir(), "-o", partial, NATIVE_SOURCE]);
  await rename(partial, output);
  return output;
}
