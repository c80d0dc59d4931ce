// The in-guest agent (src/guest) as one ESM file that the guest's node runs: bundled from the sources in a
// checkout, or the copy the package was built with (dist/guest-agent.js: an installed package has no sources).
import { readFile } from "node:fs/promises";
import { FROM_SOURCES, packagePath } from "../util/package-root.ts";

export const GUEST_ENTRY = packagePath("src", "guest", "main.ts");
export const PREBUILT_GUEST_AGENT = packagePath("dist", "guest-agent.js");

export async function bundleGuestAgent(): Promise<Buffer> {
  if (!FROM_SOURCES) return readFile(PREBUILT_GUEST_AGENT);
  // esbuild is a build tool: an installed package does not have it, and does not come here.
  const { build } = await import("esbuild");
  const result = await build({
    entryPoints: [GUEST_ENTRY],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    write: false,
    legalComments: "none",
    logLevel: "silent",
    // CommonJS dependencies (tar-stream's streamx) require() node's built-ins, which an ESM bundle can only
    // do through a require of its own.
    banner: {
      js: '// Corral guest agent (bundled; source: src/guest)\nimport { createRequire as __corralCreateRequire } from "node:module";\nconst require = __corralCreateRequire(import.meta.url);',
    },
  });
  const output = result.outputFiles[0];
  if (!output) throw new Error("esbuild produced no output for the guest agent");
  return Buffer.from(output.contents);
}
