// A warm pool: clones kept restored and idle are handed out by creates, each becoming a machine of its own;
// the pool refills; a daemon kill -9 leaves taken clones running (re-attached) and pooled ones cleaned up.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { lstat, readdir, readlink } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { processAlive } from "../../src/util/process-alive.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";
import { until } from "../helpers/until.ts";

const CONFIG = `config:
  host_groups:
    - name: sbox
      image: base
      vcpu: 1
      ram_mb: 512
      warm_pool: 2
`;

describe("warm pool", { timeout: 900_000 }, () => {
  let daemon: TestDaemon;

  const sh = async (hostname: string, script: string): Promise<string> => {
    const result = await daemon.client.execBuffered(hostname, { cmd: "sh", args: ["-c", script] });
    assert.equal(result.exit_code, 0, `${script}: ${result.stderr}`);
    return result.stdout.trim();
  };
  const pooled = async (): Promise<number> => (await daemon.client.templates())[0]?.pooled ?? 0;
  const poolFull = (): Promise<true> => until(async () => ((await pooled()) === 2 ? true : undefined), "a full warm pool", 180_000);
  const fromPool = (hostname: string): boolean => new RegExp(`"vm":"${hostname}"[^\\n]*"msg":"VM taken from the warm pool"`).test(daemon.log);
  /** QEMU pids of the pooled clones (folders; a taken clone leaves a link under its pool name, not counted). */
  const poolPids = async (): Promise<number[]> => {
    const vms = join(daemon.stateDir, "vms");
    const pids: number[] = [];
    for (const name of await readdir(vms)) {
      if (!name.startsWith(".pool-")) continue;
      try {
        if (!(await lstat(join(vms, name))).isDirectory()) continue;
        pids.push(Number(readFileSync(join(vms, name, "qemu.pid"), "utf8").trim()));
      } catch {
        // a clone still being restored (no pid file yet) or being removed: not one of the pool's
      }
    }
    return pids;
  };

  before(async () => {
    daemon = await TestDaemon.create(CONFIG);
    await daemon.start();
  });

  after(async () => {
    await daemon.dispose();
  });

  test("the pool fills once the template is ready, and /templates says so", async () => {
    await poolFull();
    const [info] = await daemon.client.templates();
    assert.equal(info?.warm_pool, 2);
    assert.equal(info?.state, "ready");
    assert.equal((await poolPids()).length, 2);
    const { stdout } = await promisify(execFile)(fileURLToPath(new URL("../../corral", import.meta.url)), ["template", "list", "--url", daemon.url]);
    assert.match(stdout, /^HOSTGROUP\s+STATE\s+TEMPLATE\s+IMAGE\s+SIZE\s+CLONES\s+WARM\s+BUILT\n/);
    assert.match(stdout, /\n?sbox\s+ready .*\s2\/2\s/);
  });

  test("creates take pooled clones, each its own machine; the pool refills", async () => {
    const a = await daemon.client.createNode("sbox", {}, { wait: "agent" });
    const b = await daemon.client.createNode("sbox", {}, { wait: "agent" });
    assert.ok(fromPool(a.hostname) && fromPool(b.hostname), daemon.log);
    const probe = "hostname; cat /proc/sys/kernel/random/uuid; head -c32 /dev/urandom | sha256sum; cat /etc/machine-id; cat /sys/class/net/eth0/address; date +%s";
    const [outA, outB] = [await sh(a.hostname, probe), await sh(b.hostname, probe)];
    const hostSeconds = Date.now() / 1000;
    const linesA = outA.split("\n");
    const linesB = outB.split("\n");
    assert.equal(linesA[0], a.hostname);
    assert.equal(linesB[0], b.hostname);
    for (let i = 1; i <= 4; i++) assert.notEqual(linesA[i], linesB[i], `line ${i} of ${probe}`);
    for (const clock of [linesA[5], linesB[5]]) assert.ok(Math.abs(Number(clock) - hostSeconds) < 5, `guest clock ${clock}`);
    // The VM's files are under its own name: logs, and a folder that holds its sockets.
    assert.match((await daemon.client.logs(a.hostname)).content, /corral-boot: corral-template is up/);
    await poolFull();
    await daemon.client.deleteNode("sbox", b.hostname);
  });

  test("a rebuilt template replaces the pooled clones of the old one", async () => {
    await poolFull();
    const before = await poolPids();
    const old = (await daemon.client.templates())[0]?.template_id;
    await daemon.client.rebuildTemplate("sbox");
    await until(
      async () => {
        const [info] = await daemon.client.templates();
        const pids = await poolPids();
        return info?.state === "ready" && info.template_id !== old && pids.length === 2 && pids.every((pid) => !before.includes(pid)) ? true : undefined;
      },
      "a pool of clones of the new template",
      180_000,
    );
    for (const pid of before) await until(async () => (processAlive(pid) ? undefined : true), `old pooled clone ${pid} to end`, 10_000);
  });

  test("a taken clone migrates like any VM: memory commit and fork, suspend and restore; deleting it leaves nothing", async () => {
    await poolFull();
    const clone = await daemon.client.createNode("sbox", {}, { wait: "agent" });
    assert.ok(fromPool(clone.hostname));
    await sh(clone.hostname, "echo pooled > /tmp/mark");
    const commit = await daemon.client.commit(clone.hostname, { memory: true });
    const fork = await daemon.client.fork(commit.commit_id, {}, { wait: "agent" });
    assert.equal(await sh(fork.hostname, "cat /tmp/mark"), "pooled");
    await daemon.client.deleteNode("sbox", fork.hostname);
    await daemon.client.deleteCommit(commit.commit_id);
    await daemon.client.suspend(clone.hostname);
    await daemon.client.restore(clone.hostname, { wait: "agent" });
    assert.equal(await sh(clone.hostname, "cat /tmp/mark"), "pooled");
    await daemon.client.deleteNode("sbox", clone.hostname);
    // Left: sbox-1 (from the test before), pooled clones' folders, and the one link a taken clone leaves for
    // QEMU's paths, pointing at sbox-1. Nothing of the deleted clone.
    const vms = join(daemon.stateDir, "vms");
    const names = await readdir(vms);
    assert.deepEqual(
      names.filter((name) => !name.startsWith(".pool-")),
      ["sbox-1"],
    );
    const links = [];
    for (const name of names.filter((n) => n.startsWith(".pool-"))) {
      if ((await lstat(join(vms, name))).isSymbolicLink()) links.push(await readlink(join(vms, name)));
    }
    assert.deepEqual(links, ["sbox-1"]);
  });

  test("after kill -9, a taken clone is re-attached and the old pooled clones are cleaned up and replaced", async () => {
    await poolFull();
    const taken = (await daemon.client.describe("sbox-1")).hostname;
    await sh(taken, "echo still-here > /tmp/mark");
    const before = await poolPids();
    await daemon.kill9();
    await daemon.start();
    assert.equal(await sh(taken, "cat /tmp/mark"), "still-here");
    for (const pid of before) await until(async () => (processAlive(pid) ? undefined : true), `old pooled clone ${pid} to end`, 10_000);
    await poolFull();
    const after = await poolPids();
    assert.equal(after.filter((pid) => before.includes(pid)).length, 0);
    const fresh = await daemon.client.createNode("sbox", {}, { wait: "agent" });
    assert.ok(fromPool(fresh.hostname));
    assert.equal(await sh(fresh.hostname, "hostname"), fresh.hostname);
  });
});
