// Corral as a user installs it: `npm pack` (which builds dist/ and the dashboard), the tarball installed with
// `npm install -g` into a prefix of the test's own, then that `corral` run from another directory: --version,
// `corral up --no-controller` with a daemon of its own, a sandbox made, used and deleted, Ctrl-C. The
// tarball holds the built package only (no TypeScript sources, no tests). npm fetches the dependencies from
// the registry (or its cache) and compiles the native ones: this file takes minutes.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { PACKAGE_ROOT } from "../../src/util/package-root.ts";

const VERSION = (JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string }).version;
const work = mkdtempSync(join(tmpdir(), "corral-pkg-"));
const prefix = join(work, "prefix");
const stateDir = join(work, "state");
const installed = join(prefix, "bin", "corral");

function sh(command: string, args: string[], cwd = work, timeoutMs = 120_000): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(command, args, { cwd, encoding: "utf8", timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
}

describe("the packed tarball, installed with npm install -g", { timeout: 30 * 60_000 }, () => {
  let tarball = "";
  let up: ChildProcess | undefined;
  let upLog = "";

  before(() => {
    const packed = sh("npm", ["pack", "--pack-destination", work, "--loglevel=error"], PACKAGE_ROOT, 10 * 60_000);
    assert.equal(packed.status, 0, packed.stderr);
    tarball = join(work, packed.stdout.trim().split("\n").pop() ?? "");
    const install = sh(
      "npm",
      ["install", "-g", "--prefix", prefix, "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", "--allow-scripts=better-sqlite3,node-pty", tarball],
      work,
      20 * 60_000,
    );
    assert.equal(install.status, 0, install.stderr);
  });

  after(async () => {
    if (up && up.exitCode === null) {
      up.kill("SIGKILL");
      spawnSync("pkill", ["-KILL", "-f", stateDir]);
    }
    rmSync(work, { recursive: true, force: true });
  });

  test("the tarball is the built package: dist, the dashboard, the guest agent, no sources or tests; a lockfile pins its dependencies", () => {
    const files = sh("tar", ["tzf", tarball]).stdout.split("\n").filter(Boolean);
    for (const needed of [
      "package/dist/corral.js",
      "package/dist/guest-agent.js",
      "package/web/dist/index.html",
      "package/scripts/bootstrap.sh",
      "package/src/guest/native/corral-native.c",
      "package/npm-shrinkwrap.json",
    ]) {
      assert.ok(files.includes(needed), `${needed} is in the tarball`);
    }
    assert.deepEqual(
      files.filter((f) => f.endsWith(".ts") || f.startsWith("package/test/") || f.startsWith("package/bench/")),
      [],
    );
    const manifest = JSON.parse(sh("tar", ["xzf", tarball, "-O", "package/package.json"]).stdout) as { dependencies: Record<string, string> };
    for (const buildTool of ["vite", "react", "tsx", "esbuild", "typescript", "@xterm/xterm"])
      assert.equal(manifest.dependencies[buildTool], undefined, `${buildTool} is not a runtime dependency`);
  });

  test("corral --version from another directory", () => {
    const result = sh(installed, ["--version"]);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stdout.trim(), VERSION);
  });

  test("corral up --no-controller, then vm add, exec and delete, then Ctrl-C", async () => {
    up = spawn(installed, ["up", "--no-controller", "--port", "0", "--state-dir", stateDir], { cwd: work, stdio: ["ignore", "ignore", "pipe"] });
    up.stderr?.on("data", (chunk: Buffer) => (upLog += chunk.toString()));
    const deadline = Date.now() + 15 * 60_000;
    while (!upLog.includes("Corral is up")) {
      assert.equal(up.exitCode, null, `corral up exited:\n${upLog}`);
      assert.ok(Date.now() < deadline, `corral up did not come up:\n${upLog}`);
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.match(upLog, /corral: Debian packages are installed/, "the installed CLI runs the bootstrap itself");
    assert.match(upLog, /^ {2}corral vm add sbox/m, "the hints name the installed command");

    const added = sh(installed, ["vm", "add", "--state-dir", stateDir, "--timeout", "10m"], work, 11 * 60_000);
    assert.equal(added.status, 0, `${added.stderr}\n${upLog}`);
    const name = added.stdout.trim();
    assert.equal(name, "sbox-1");
    const kernel = sh(installed, ["vm", "exec", name, "--state-dir", stateDir, "--", "uname", "-r"]);
    assert.equal(kernel.status, 0, kernel.stderr);
    assert.match(kernel.stdout, /^\d+\.\d+\.\d+/);
    const deleted = sh(installed, ["vm", "delete", name, "--state-dir", stateDir]);
    assert.equal(deleted.status, 0, deleted.stderr);
    assert.match(deleted.stdout, /Deleted sbox-1/);

    const exited = new Promise<number | null>((resolve) => up?.once("exit", (code) => resolve(code)));
    up.kill("SIGINT");
    assert.equal(await exited, 0, upLog);
    assert.equal(spawnSync("pgrep", ["-f", stateDir]).status, 1, "no process of that daemon is left");
  });
});
