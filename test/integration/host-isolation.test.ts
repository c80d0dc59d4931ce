// The daemon and its wall: a daemon that cannot wall guests off refuses to start, naming what is missing and
// the knob that runs guests unwalled on purpose; with that knob it starts and says so in its log and in
// GET /info; VMs started without the wall and re-attached by a daemon with it are reported. "nft is not
// installed" is made real for one daemon by a private mount namespace in which nft is /dev/null.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { processSocketGid } from "../../src/net/guest-group.ts";
import { findProgram } from "../../src/util/run.ts";
import { qemuPids, TEST_CONFIG, TestDaemon } from "../helpers/daemon-process.ts";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

const withNetwork = (network: string): string => TEST_CONFIG.replace("config:\n", `config:\n  network:\n${network}`);

/**
 * `corral daemon` in a mount namespace of its own where nft is /dev/null (not executable: "not installed").
 * Resolves with its exit code and output once it exits, or, once it is listening, with a stop function.
 */
async function daemonWithoutNft(config: string): Promise<{ stateDir: string; exitCode: number | null; output: () => string; stop: () => Promise<void> }> {
  const nft = findProgram("nft");
  assert.ok(nft, "nft is installed on this host (scripts/bootstrap.sh)");
  const stateDir = await mkdtemp(join(tmpdir(), "corral-t-"));
  await writeFile(join(stateDir, "config.yaml"), config);
  const child = spawn(
    "unshare",
    [
      "-m",
      "sh",
      "-c",
      'mount --bind /dev/null "$0" && exec "$@"',
      realpathSync(nft),
      process.execPath,
      "--import",
      "tsx",
      CLI,
      "daemon",
      "--state-dir",
      stateDir,
      "--config",
      join(stateDir, "config.yaml"),
      "--port",
      "0",
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, CORRAL_LOG_LEVEL: "info" } },
  );
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const deadline = Date.now() + 90_000;
  while (child.exitCode === null && !existsSync(join(stateDir, "daemon.json"))) {
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`The daemon neither started nor exited:\n${output}`);
    }
    await sleep(50);
  }
  return {
    stateDir,
    exitCode: child.exitCode,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

describe("a daemon and its wall", { timeout: 600_000 }, () => {
  const stateDirs: string[] = [];
  after(async () => {
    for (const dir of stateDirs) await rm(dir, { recursive: true, force: true });
  });

  test("without nft the daemon refuses to start, naming what is missing and the knob; nothing is started", async () => {
    const run = await daemonWithoutNft(TEST_CONFIG);
    stateDirs.push(run.stateDir);
    await run.stop();
    assert.equal(run.exitCode, 1, run.output());
    assert.match(run.output(), /cannot start the daemon: Cannot wall guests off from this host's services: "nft" is not installed \(Debian package "nftables"/);
    assert.match(run.output(), /set config\.network\.host_isolation: false to run guests unwalled on purpose/);
    assert.equal(existsSync(join(run.stateDir, "daemon.json")), false);
    assert.equal(existsSync(join(run.stateDir, "daemon.pid")), false, "the state lock is released");
    assert.deepEqual(qemuPids(run.stateDir), []);
  });

  test("host_isolation: false starts without nft, and says so in the log and in GET /info", async () => {
    const run = await daemonWithoutNft(withNetwork("    host_isolation: false\n"));
    stateDirs.push(run.stateDir);
    try {
      assert.equal(run.exitCode, null, run.output());
      const { url } = JSON.parse(readFileSync(join(run.stateDir, "daemon.json"), "utf8")) as { url: string };
      const info = (await (await fetch(`${url}/info`)).json()) as { host_isolation: unknown };
      assert.deepEqual(info.host_isolation, {
        state: "off",
        table: null,
        group: null,
        gid: null,
        host_access: [],
        unwalled_vms: [],
        warning: "Host isolation is off (config.network.host_isolation: false): guests reach every service listening on this host",
      });
      assert.match(run.output(), /"level":40[^\n]*Host isolation is off/);
    } finally {
      await run.stop();
    }
  });

  test("a VM started with the wall off and re-attached by a daemon with it is reported in the log and GET /info", async () => {
    const config = (network: string): string => withNetwork(network).replace("ram_mb: 512\n", "ram_mb: 512\n      template: false\n");
    const daemon = await TestDaemon.create(config("    host_isolation: false\n"));
    try {
      await daemon.start();
      const { hostname } = await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "180s" });
      const [pid] = qemuPids(daemon.stateDir);
      assert.equal(processSocketGid(pid as number), 0, "with the wall off, QEMU runs with the daemon's own group");
      await daemon.kill9();
      await writeFile(daemon.configPath, config("    host_isolation: true\n"));
      await daemon.start();
      assert.match(daemon.log, new RegExp(`"level":40[^\\n]*"vms":\\["${hostname}"\\][^\\n]*outside the wall`));
      const info = (await daemon.client.info()).host_isolation;
      assert.equal(info.state, "on");
      assert.deepEqual(info.unwalled_vms, [hostname]);
      assert.match(info.warning ?? "", /1 VM\(s\) run outside the wall/);
    } finally {
      await daemon.dispose();
    }
  });
});
