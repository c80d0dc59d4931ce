// The controller's API key kept off the command line (where ps shows it to every user): --api-key-file,
// refused when others may read it, and CORRAL_API_KEY; --api-key still works, with one warning. Real
// `corral controller` processes.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { corral } from "../helpers/cli-process.ts";
import { until } from "../helpers/until.ts";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const KEY = "key-options-test-0123456789";

interface Started {
  child: ChildProcess;
  url: string;
  stderr(): string;
  stop(): Promise<void>;
}

async function startController(stateDir: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Started> {
  const child = spawn(process.execPath, ["--import", "tsx", CLI, "controller", "--state-dir", stateDir, "--port", "0", ...args], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, CORRAL_API_KEY: undefined, ...env },
  });
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const info = join(stateDir, "controller.json");
  await until(() => (existsSync(info) ? true : child.exitCode !== null ? true : undefined), "the controller to start", 60_000);
  if (child.exitCode !== null) throw new Error(`The controller exited with ${child.exitCode}: ${stderr}`);
  const url = (JSON.parse(readFileSync(info, "utf8")) as { url: string }).url;
  return {
    child,
    url,
    stderr: () => stderr,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

async function status(url: string, key: string | undefined): Promise<number> {
  return (await fetch(`${url}/api/status`, { headers: key ? { authorization: `Bearer ${key}` } : {} })).status;
}

describe("the controller's API key off the command line", { timeout: 300_000 }, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-keys-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test("--api-key-file: the key works, ps does not show it, nothing is warned", async () => {
    const file = join(dir, "key");
    await writeFile(file, `${KEY}\n`, { mode: 0o600 });
    const controller = await startController(join(dir, "s1"), ["--api-key-file", file]);
    try {
      assert.equal(await status(controller.url, KEY), 200);
      assert.equal(await status(controller.url, undefined), 401);
      const cmdline = readFileSync(`/proc/${controller.child.pid}/cmdline`, "utf8");
      assert.ok(!cmdline.includes(KEY), "the key is not in the process's command line");
      assert.doesNotMatch(controller.stderr(), /warning/);
    } finally {
      await controller.stop();
    }
  });

  test("a key file others may read is refused, saying how to fix it", async () => {
    const file = join(dir, "loose-key");
    await writeFile(file, `${KEY}\n`);
    await chmod(file, 0o644);
    const result = await corral(["controller", "--state-dir", join(dir, "s2"), "--port", "0", "--api-key-file", file], { CORRAL_API_KEY: "" });
    assert.equal(result.code, 2);
    assert.match(result.stderr, /is open to other users \(mode 0644\): run "chmod 600 /);
  });

  test("CORRAL_API_KEY works without a warning; --api-key works with one warning", async () => {
    const fromEnv = await startController(join(dir, "s3"), [], { CORRAL_API_KEY: KEY });
    try {
      assert.equal(await status(fromEnv.url, KEY), 200);
      assert.doesNotMatch(fromEnv.stderr(), /warning/);
    } finally {
      await fromEnv.stop();
    }
    const fromFlag = await startController(join(dir, "s4"), ["--api-key", KEY]);
    try {
      assert.equal(await status(fromFlag.url, KEY), 200);
      const warnings = fromFlag.stderr().match(/warning: --api-key on the command line is visible to every user of this machine \(ps\)/g) ?? [];
      assert.equal(warnings.length, 1, fromFlag.stderr());
    } finally {
      await fromFlag.stop();
    }
  });

  test("--help says how to keep the key and tokens off the command line", () => {
    // Not through ./corral: `./corral up` first installs what is missing, even for --help.
    const help = (args: string[]): string => spawnSync(process.execPath, ["--import", "tsx", CLI, ...args, "--help"], { encoding: "utf8" }).stdout;
    const controllerHelp = help(["controller"]);
    assert.match(controllerHelp, /--api-key-file <file>/);
    assert.match(controllerHelp, /CORRAL_API_KEY/);
    assert.match(help(["up"]), /--api-key-file <file>/);
    assert.match(help(["host", "add"]), /--token-file <file>/);
    assert.match(help(["vm", "list"]), /--token-file <file>/);
  });
});
