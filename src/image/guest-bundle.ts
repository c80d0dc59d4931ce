// Bundles the in-guest agent (src/guest) into one ESM file that the guest's node runs.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

export const GUEST_ENTRY = fileURLToPath(new URL("../guest/main.ts", import.meta.url));

export async function bundleGuestAgent(): Promise<Buffer> {
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
