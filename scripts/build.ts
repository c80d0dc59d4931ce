// `npm run build` (and `npm pack`, through prepack): Corral as the package installs it. The CLI (which runs the
// daemon and the controller too) as JavaScript in dist/ (dist/corral.js and the chunks it loads on demand, so
// that `corral --version` reads little), the guest agent bundled as dist/guest-agent.js (an installed package
// has no sources to bundle it from), and the dashboard in web/dist. npm packages stay outside the bundle: the
// package's own node_modules provide them (the native ones, better-sqlite3 and node-pty, are built there).
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { build } from "esbuild";
import { bundleGuestAgent } from "../src/image/guest-bundle.ts";
import { buildDashboard } from "../src/setup/web-build.ts";
import { PACKAGE_ROOT } from "../src/util/package-root.ts";

const dist = join(PACKAGE_ROOT, "dist");
const EXTERNAL = ["better-sqlite3", "node-pty", "pino", "pg", "pg-native", "thread-stream", "esbuild", "vite", "playwright-core"];
const started = performance.now();
await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });

await build({
  entryPoints: { corral: join(PACKAGE_ROOT, "src", "cli", "main.ts") },
  outdir: dist,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  // Pure JavaScript packages are bundled (one file read instead of hundreds); native modules, and packages
  // that load files of their own at run time (pino's worker transports), stay in node_modules.
  external: EXTERNAL,
  // Bundled CommonJS packages require() node's built-ins, which an ESM bundle can only do through a require of its own.
  banner: { js: 'import { createRequire as __corralCreateRequire } from "node:module";\nconst require = __corralCreateRequire(import.meta.url);' },
  chunkNames: "chunks/[name]-[hash]",
  legalComments: "none",
  logLevel: "warning",
  sourcemap: "linked",
});
// The entry runs as a program: `npm install -g` links it into PATH (and makes it executable).
const entry = join(dist, "corral.js");
await writeFile(entry, `#!/usr/bin/env node\n${await readFile(entry, "utf8")}`);
await chmod(entry, 0o755);

await writeFile(join(dist, "guest-agent.js"), await bundleGuestAgent());
await buildDashboard(PACKAGE_ROOT);
console.error(`corral: built dist/ and web/dist in ${((performance.now() - started) / 1000).toFixed(1)} s`);
