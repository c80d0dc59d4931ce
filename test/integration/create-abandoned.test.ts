// Creates are all or nothing as their client sees them: a client that leaves before its answer (during the
// clone or boot, during `?wait=`) leaves no VM behind, whichever way the VM was being made (cold boot,
// template clone, warm-pool clone, fork, TTstack's agent API, the SDK with an AbortSignal, the CLI
// interrupted). Real daemon, real VMs; every wait polls with a deadline.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { request } from "node:http";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { CORRAL } from "../helpers/cli-process.ts";
import { CREATE_PATHS_CONFIG, processRunning, qemuPids, TestDaemon, vmQemuPids } from "../helpers/daemon-process.ts";
import { until } from "../helpers/until.ts";

/** How long a left-behind VM may take to go: "within seconds", with room for a loaded machine. */
const GONE_WITHIN_MS = 30_000;

describe("abandoned creates", { timeout: 1_200_000 }, () => {
  let daemon: TestDaemon;

  /**
   * POSTs `body` to `path` and closes the connection after `afterMs`, as `curl -m` does; resolves with the
   * status if an answer came first.
   */
  const abandon = (path: string, body: unknown, afterMs: number): Promise<number | undefined> =>
    new Promise((resolve) => {
      let answered: number | undefined;
      const req = request(new URL(path, daemon.url), { method: "POST", headers: { "content-type": "application/json" } });
      req.on("response", (res) => {
        answered = res.statusCode;
        res.resume();
      });
      req.on("error", () => undefined);
      req.end(JSON.stringify(body));
      setTimeout(() => {
        req.destroy();
        resolve(answered);
      }, afterMs);
    });

  /** VM folders (warm-pool clones' left out) of the state directory. */
  const vmFolders = async (): Promise<string[]> => (await readdir(join(daemon.stateDir, "vms")).catch(() => [])).filter((n) => !n.startsWith(".pool-")).sort();

  /** Resolves once no VM is left: no record, no QEMU process of a named VM, no folder. */
  const nothingLeft = async (what: string, keep: string[] = []): Promise<void> => {
    await until(
      async () => {
        const nodes = (await daemon.client.nodes()).map((n) => n.hostname).filter((h) => !keep.includes(h));
        const folders = (await vmFolders()).filter((h) => !keep.includes(h));
        return nodes.length === 0 && folders.length === 0 && vmQemuPids(daemon.stateDir).length === keep.length ? true : undefined;
      },
      `${what}: nothing left (nodes ${JSON.stringify(await daemon.client.nodes().then((n) => n.map((x) => x.hostname)))}, folders ${JSON.stringify(await vmFolders())})`,
      GONE_WITHIN_MS,
      200,
    );
  };

  const rolledBack = (): number => (daemon.log.match(/Create rolled back/g) ?? []).length;

  before(async () => {
    daemon = await TestDaemon.create(CREATE_PATHS_CONFIG);
    await daemon.start();
  });

  after(async () => {
    await daemon.dispose();
  });

  test("a client that leaves during a cold boot's create or its wait leaves nothing", async () => {
    for (const afterMs of [50, 300, 3000]) {
      const before = rolledBack();
      const answered = await abandon("/hostgroup/cold/nodes?wait=agent&timeout=5m", {}, afterMs);
      assert.equal(answered, undefined, `no answer within ${afterMs} ms (a cold boot takes seconds)`);
      await nothingLeft(`left after ${afterMs} ms`);
      assert.equal(rolledBack(), before + 1, daemon.log);
    }
    const metrics = await daemon.client.metrics();
    assert.match(metrics, /corral_vm_create_rolled_back_total\{hostgroup="cold"\} 3\b/);
  });

  test("the SDK's signal and an interrupted `corral vm add` give up a create the same way", async () => {
    await assert.rejects(daemon.client.createNode("cold", {}, { wait: "agent", signal: AbortSignal.timeout(1000) }), { name: /AbortError|TimeoutError/ });
    await nothingLeft("SDK create aborted");
    const cli = spawn(CORRAL, ["vm", "add", "cold", "--url", daemon.url], { stdio: "ignore" });
    await until(async () => ((await daemon.client.nodes()).length > 0 ? true : undefined), "the CLI's VM", 60_000);
    cli.kill("SIGINT");
    await nothingLeft("corral vm add interrupted");
  });

  test("a template clone given up on is removed, not booted cold, and the template stays good", async () => {
    await until(async () => ((await daemon.client.templates()).find((t) => t.hostgroup === "tmpl")?.state === "ready" ? true : undefined), "the tmpl template", 300_000, 500);
    // Userdata that sleeps keeps `wait=userdata` from answering: the client always leaves unanswered.
    for (const afterMs of [30, 150, 2000]) {
      assert.equal(await abandon("/hostgroup/tmpl/nodes?wait=userdata", { userdata: "sleep 60" }, afterMs), undefined);
      await nothingLeft(`tmpl create left after ${afterMs} ms`);
    }
    assert.equal((await daemon.client.templates()).find((t) => t.hostgroup === "tmpl")?.state, "ready");
    assert.doesNotMatch(daemon.log, /Template is missing or broken/);
    assert.doesNotMatch(daemon.log, /"vm":"tmpl-\d+"[^\n]*"msg":"VM started"/, "no clone given up on was booted cold instead");
  });

  test("a warm-pool clone taken by an abandoned create is deleted, not returned to the pool", async () => {
    const pooled = async (): Promise<number> => (await daemon.client.templates()).find((t) => t.hostgroup === "pool")?.pooled ?? 0;
    await until(async () => ((await pooled()) === 1 ? true : undefined), "a pooled clone", 300_000, 500);
    const poolPids = (): number[] => {
      const named = new Set(vmQemuPids(daemon.stateDir));
      return qemuPids(daemon.stateDir).filter((p) => !named.has(p));
    };
    const [taken] = poolPids();
    assert.ok(taken, "the pooled clone's QEMU runs");
    const answered = await abandon("/hostgroup/pool/nodes?wait=userdata", { userdata: "sleep 60" }, 1500);
    assert.equal(answered, undefined);
    assert.match(daemon.log, /"msg":"VM taken from the warm pool"/);
    await nothingLeft("pool create abandoned");
    await until(async () => (!processRunning(taken) ? true : undefined), "the taken clone's QEMU to end", GONE_WITHIN_MS);
    // The pool refills with a new clone, not the one the create took.
    await until(async () => ((await pooled()) === 1 ? true : undefined), "the pool to refill", 300_000, 500);
    assert.equal(poolPids().includes(taken), false);
  });

  test("a fork and a TTstack agent create whose client left leave nothing; an answered create stays", async () => {
    const kept = await daemon.client.createNode("cold", {}, { wait: "agent", timeout: "5m" });
    const commit = await daemon.client.commit(kept.hostname);
    assert.equal(await abandon(`/vm/commits/${commit.commit_id}/fork?wait=agent`, {}, 500), undefined);
    await nothingLeft("fork abandoned", [kept.hostname]);
    assert.equal(await abandon("/api/vms", { vm_id: "api-1", image: "base", cpu: 1, mem: 512, ports: [8080] }, 20), undefined);
    await nothingLeft("TTstack create abandoned", [kept.hostname]);
    // The answered one was never touched: it still runs commands.
    assert.equal((await daemon.client.execBuffered(kept.hostname, { cmd: "true" })).exit_code, 0);
    await daemon.client.deleteNode("cold", kept.hostname);
    await daemon.client.deleteCommit(commit.commit_id);
  });
});
