// How long the `corral` command takes to answer, from the built package (dist/corral.js, what `npm install -g`
// installs) and from the checkout's ./corral (tsx over the TypeScript sources), beside the floor: `node -e 0`,
// the cost of starting Node itself. `--version` reads nothing but commander and package.json; `vm list` asks a
// running daemon. Runs alternate between the commands so that noise hits them alike.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { PACKAGE_ROOT } from "../src/util/package-root.ts";
import { ms, percentile, ratio, table } from "./stats.ts";

export const CLI_BENCH_HEADERS = ["corral command", "p50", "p90", "vs node -e 0 (p50)"] as const;

const BUILT = join(PACKAGE_ROOT, "dist", "corral.js");
const CHECKOUT = join(PACKAGE_ROOT, "corral");

function timed(command: string, args: readonly string[]): number {
  const started = performance.now();
  const result = spawnSync(command, args, { stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
  const elapsed = performance.now() - started;
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} failed (${result.status}): ${result.stderr}`);
  return elapsed;
}

export async function runCliBench(daemonUrl: string, runs: number, log: (line: string) => void): Promise<{ rows: string[][]; samples: Record<string, number[]> }> {
  if (!existsSync(BUILT)) {
    log("cli: building dist/ (npm run build)");
    const built = spawnSync("npm", ["run", "build", "--silent"], { cwd: PACKAGE_ROOT, stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
    if (built.status !== 0) throw new Error(`npm run build failed: ${built.stderr}`);
  }
  const cases: [string, string, string[]][] = [
    ["node -e 0 (the floor)", process.execPath, ["-e", "0"]],
    ["corral --version (package)", process.execPath, [BUILT, "--version"]],
    ["corral vm list (package)", process.execPath, [BUILT, "vm", "list", "--url", daemonUrl]],
    ["./corral --version (checkout, tsx)", CHECKOUT, ["--version"]],
    ["./corral vm list (checkout, tsx)", CHECKOUT, ["vm", "list", "--url", daemonUrl]],
  ];
  const samples: Record<string, number[]> = Object.fromEntries(cases.map(([name]) => [name, []]));
  for (const [, command, args] of cases) timed(command, args); // warm the page cache
  for (let run = 0; run < runs; run++) {
    for (const [name, command, args] of cases) samples[name]?.push(timed(command, args));
  }
  const floor = percentile(samples["node -e 0 (the floor)"] ?? [], 50);
  const rows = cases.map(([name]) => {
    const s = samples[name] ?? [];
    return [name, ms(percentile(s, 50)), ms(percentile(s, 90)), ratio(percentile(s, 50), floor)];
  });
  log(`cli: ${runs} runs each, node -e 0 p50 ${ms(floor)}`);
  return { rows, samples };
}

/** The table, for bench/main.ts. */
export function cliTable(rows: readonly string[][]): string {
  return table([...CLI_BENCH_HEADERS], rows);
}
