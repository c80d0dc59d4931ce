// `npm test`: the type checks (Node code; the web dashboard, in the browser's settings and with its tests),
// the lint and format check (Biome), the set-up step (guest kernel, images base and debian, dashboard build;
// idempotent), then every test file under test/ with Node's own runner. Unit tests run two at a time; tests
// that boot VMs one file at a time, since each guest is emulated on this machine's few cores. Arguments
// narrow the run to the files given.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ImageManifest, ImageStore } from "../src/image/image-store.ts";
import { runSetup } from "../src/setup/setup.ts";

function testFiles(dir: string): string[] {
  try {
    return readdirSync(dir, { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".test.ts"))
      .sort()
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}

// Each run also writes its report to a file, so the failures of every run, with their errors, are printed
// again at the very end: a CI log keeps only its tail, where the unit tests' failures are long gone.
const reports = mkdtempSync(join(tmpdir(), "corral-test-reports-"));

function runTests(name: string, files: string[], concurrency: number): number {
  if (files.length === 0) return 0;
  const report = join(reports, `${name}.txt`);
  const reporters = ["--test-reporter=spec", "--test-reporter-destination=stdout", "--test-reporter=spec", `--test-reporter-destination=${report}`];
  const result = spawnSync(process.execPath, ["--import", "tsx", "--test", ...reporters, `--test-concurrency=${concurrency}`, ...files], {
    stdio: "inherit",
    env: { ...process.env, CORRAL_LOG_LEVEL: process.env.CORRAL_LOG_LEVEL ?? "warn" },
  });
  return result.status ?? 1;
}

/** The spec reporter's closing "failing tests" section of a run, at most `maxLines` lines of it. */
function failingSection(name: string, maxLines: number): string | undefined {
  let text: string;
  try {
    text = readFileSync(join(reports, `${name}.txt`), "utf8");
  } catch {
    return undefined;
  }
  const start = text.lastIndexOf("failing tests:");
  if (start < 0) return undefined;
  const lines = text.slice(start).split("\n");
  return lines.length > maxLines ? [...lines.slice(0, maxLines), `… ${lines.length - maxLines} more lines in the ${name} run's output above`].join("\n") : lines.join("\n");
}

console.error("corral: type check");
// The web dashboard has its own settings (DOM, JSX, no Node types); web/tsconfig.test.json adds its tests.
const typecheck = [".", "web", "web/tsconfig.test.json"].every(
  (project) => spawnSync(process.execPath, ["node_modules/typescript/bin/tsc", "--noEmit", "-p", project], { stdio: "inherit" }).status === 0,
);
if (!typecheck) {
  console.error("corral: the type check failed");
  process.exit(1);
}

// Lint and format (Biome, biome.json) over src, test, bench, scripts and the dashboard: `npm run format` fixes
// the formatting, `npm run lint` shows the rest.
console.error("corral: lint and format check (biome)");
if (spawnSync(process.execPath, ["node_modules/@biomejs/biome/bin/biome", "check", "--reporter=summary"], { stdio: "inherit" }).status !== 0) {
  console.error("corral: the lint or format check failed: npm run format fixes the formatting; npm run lint lists the rest");
  process.exit(1);
}

console.error("corral: set-up (guest kernel, images base and debian, web dashboard)");
const setup = await runSetup();
const builtImages = [setup.baseImage, setup.debianImage].filter((image) => image !== undefined);

/** What a version was built from, without when a forced build was asked for (the templates test forces one). */
function buildInputs(manifest: ImageManifest): string {
  const { forced_at: _forced, ...inputs } = manifest.inputs;
  return JSON.stringify(Object.entries(inputs).sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * Images whose current version was built from other inputs than the one set-up built or found. The image
 * store is shared by every checkout on the host (CORRAL_HOME), and the tests boot whatever `current` names:
 * a second checkout building its own guest agent meanwhile makes this run test that agent instead of ours.
 */
async function imagesRebuiltElsewhere(): Promise<string[]> {
  const store = new ImageStore(setup.home.images);
  const moved: string[] = [];
  for (const image of builtImages) {
    const now = await store.resolve(image.name).catch(() => undefined);
    if (now === undefined || buildInputs(now.manifest) !== buildInputs(image.manifest)) moved.push(`${image.name} (${image.version} -> ${now?.version ?? "none"})`);
  }
  return moved;
}

const chosen = process.argv.slice(2);
const unit = testFiles("test/unit");
const integration = testFiles("test/integration");
const pick = (files: string[]): string[] => (chosen.length === 0 ? files : files.filter((f) => chosen.some((c) => f.includes(c))));

const started = performance.now();
let failures = runTests("unit", pick(unit), 2) + runTests("integration", pick(integration), 1);
const moved = await imagesRebuiltElsewhere();
if (moved.length > 0) {
  console.error(
    `corral: while the tests ran, something else built ${moved.join(", ")} from other inputs in ${setup.home.images}: tests after that booted ` +
      "that build, not this checkout's. Run again with nothing else building images, or give each checkout its own CORRAL_HOME.",
  );
  failures++;
}
for (const name of ["unit", "integration"]) {
  const section = failingSection(name, 150);
  if (section) console.error(`\ncorral: the ${name} tests' failures again:\n${section}`);
}
rmSync(reports, { recursive: true, force: true });
console.error(`corral: tests finished in ${((performance.now() - started) / 1000).toFixed(0)}s${failures ? " with failures" : ""}`);
process.exit(failures === 0 ? 0 : 1);
