// A VM's power, tags and observability through a real daemon and real guests: pause and resume, suspend and
// restore (the guest runs on where it was), reboot, shutdown and relaunch, tags, stats, metrics, OpenAPI,
// and a login user created from import_user.
import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { request } from "undici";
import { qemuPids, TestDaemon } from "../helpers/daemon-process.ts";

/** The pid of the test's background loop (busybox has no pgrep). */
const FIND_LOOP = "ps | grep '[l]oop.sh' | awk '{print $1}'";

async function sh(daemon: TestDaemon, hostname: string, script: string): Promise<string> {
  const result = await daemon.client.execBuffered(hostname, { cmd: "sh", args: ["-c", script] });
  assert.equal(result.exit_code, 0, `${script}: ${result.stderr}${result.error ?? ""}`);
  return result.stdout.trim();
}

async function status(daemon: TestDaemon, hostname: string): Promise<{ status: string; state: string }> {
  const vm = await daemon.client.describe(hostname);
  return { status: vm.status, state: vm.state };
}

describe("VM power, tags and observability", { timeout: 900_000 }, () => {
  let daemon: TestDaemon;
  let vm: string;

  before(async () => {
    daemon = await TestDaemon.create();
    await daemon.start();
    vm = (await daemon.client.createNode("sbox", { persistent: true }, { wait: "agent", timeout: "120s" })).hostname;
  });

  after(async () => {
    await daemon.dispose();
  });

  test("pause freezes the VM: exec and health answer 409 until resume", async () => {
    assert.equal(await daemon.client.pause(vm), `VM ${vm} paused\n`);
    assert.deepEqual(await status(daemon, vm), { status: "Paused", state: "paused" });
    await assert.rejects(daemon.client.execBuffered(vm, { cmd: "true" }), { status: 409, code: "vm_paused" });
    await assert.rejects(daemon.client.health(vm), { status: 409, code: "vm_paused" });
    const stats = await daemon.client.nodeStats(vm);
    assert.equal(stats.snapshot, null);
    assert.match(stats.error ?? "", /paused/);
    await daemon.client.resume(vm);
    assert.deepEqual(await status(daemon, vm), { status: "Running", state: "running" });
    assert.equal(await sh(daemon, vm, "echo back"), "back");
  });

  test("suspend saves memory and ends QEMU; restore runs on where it was", async () => {
    await sh(daemon, vm, "echo 'i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.1; done' > /tmp/loop.sh; (sh /tmp/loop.sh </dev/null >/dev/null 2>&1 &)");
    await sleep(1000);
    const before = Number(await sh(daemon, vm, "cat /tmp/counter"));
    const loopPid = await sh(daemon, vm, FIND_LOOP);
    assert.ok(before > 0);

    await daemon.client.suspend(vm);
    assert.deepEqual(await status(daemon, vm), { status: "Stopped", state: "suspended" });
    assert.deepEqual(qemuPids(daemon.stateDir), [], "no QEMU process while suspended");
    assert.ok(existsSync(join(daemon.stateDir, "vms", vm, "suspend.state")));
    await assert.rejects(daemon.client.execBuffered(vm, { cmd: "true" }), { status: 409, code: "vm_not_running" });
    await assert.rejects(daemon.client.relaunch(vm), { status: 409, code: "conflict" });

    await sleep(2000); // the guest's clock must not lose these seconds
    await daemon.client.restore(vm, { wait: "agent", timeout: "120s" });
    assert.deepEqual(await status(daemon, vm), { status: "Running", state: "running" });
    assert.equal(await sh(daemon, vm, FIND_LOOP), loopPid, "the same process, not a new one");
    const after = Number(await sh(daemon, vm, "sleep 0.5; cat /tmp/counter"));
    assert.ok(after > before, `the loop kept counting (${before} -> ${after})`);
    const guestNow = Number(await sh(daemon, vm, "date +%s"));
    assert.ok(Math.abs(guestNow - Date.now() / 1000) < 3, "the restored guest's clock was set from the host");
    assert.equal(existsSync(join(daemon.stateDir, "vms", vm, "suspend.state")), false, "the state file goes once restored");
    await sh(daemon, vm, `kill $(${FIND_LOOP}); true`);
  });

  test("reboot restarts the guest in place and keeps its disk", async () => {
    const bootId = await sh(daemon, vm, "echo survives > /root/mark; cat /proc/sys/kernel/random/boot_id");
    const pids = qemuPids(daemon.stateDir);
    assert.equal(await daemon.client.shutdown(vm, "reboot"), `VM ${vm} is rebooting\n`);
    assert.equal(await sh(daemon, vm, "cat /root/mark"), "survives", "exec waits for the rebooted agent");
    assert.notEqual(await sh(daemon, vm, "cat /proc/sys/kernel/random/boot_id"), bootId);
    assert.deepEqual(qemuPids(daemon.stateDir), pids, "the same QEMU process");
    assert.deepEqual(await status(daemon, vm), { status: "Running", state: "running" });
  });

  test("shutdown stops a persistent VM and keeps its disk; relaunch boots it again", async () => {
    const answer = await request(`${daemon.url}/vm/${vm}/shutdown`, { method: "POST", body: "{}", headers: { "content-type": "application/json" } });
    assert.equal(answer.statusCode, 200);
    assert.equal(await answer.body.text(), `VM ${vm} is stopped; its disk is kept\n`);
    assert.deepEqual(await status(daemon, vm), { status: "Stopped", state: "stopped" });
    assert.deepEqual(qemuPids(daemon.stateDir), []);
    await assert.rejects(daemon.client.execBuffered(vm, { cmd: "true" }), { status: 409, code: "vm_not_running" });
    await assert.rejects(daemon.client.pause(vm), { status: 409 });
    await assert.rejects(daemon.client.suspend(vm), { status: 409 });

    const relaunched = await daemon.client.relaunch(vm, { wait: "agent", timeout: "120s" });
    assert.deepEqual(Object.keys(relaunched).sort(), ["arch", "created_at", "hostgroup", "hostname", "ip", "persistent"]);
    assert.equal(relaunched.hostname, vm);
    assert.equal(await sh(daemon, vm, "cat /root/mark"), "survives");
    await assert.rejects(daemon.client.relaunch(vm), { status: 409, code: "conflict" });
    await assert.rejects(daemon.client.restore(vm), { status: 409, code: "conflict" });
  });

  test("shutdown reads the action from the query or the body, and refuses a contradiction", async () => {
    const both = await request(`${daemon.url}/vm/${vm}/shutdown?action=reboot`, { method: "POST", body: '{"action":"shutdown"}' });
    assert.equal(both.statusCode, 400);
    assert.match(((await both.body.json()) as { error: string }).error, /give one action/);
    const bad = await request(`${daemon.url}/vm/${vm}/shutdown?action=explode`, { method: "POST" });
    assert.equal(bad.statusCode, 400);
    await bad.body.dump();
  });

  test("a sandbox that is not persistent is removed when shut down", async () => {
    const sandbox = (await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "120s" })).hostname;
    assert.equal(await daemon.client.shutdown(sandbox), `VM ${sandbox} is stopped and removed\n`);
    await assert.rejects(daemon.client.describe(sandbox), { status: 404 });
    assert.equal(existsSync(join(daemon.stateDir, "vms", sandbox)), false);
  });

  test("tags: add, remove, replace, clear; one operation per request", async () => {
    assert.deepEqual(await daemon.client.tags(vm), { hostname: vm, tags: [] });
    assert.deepEqual((await daemon.client.updateTags(vm, { add: ["team=a", "ci"] })).tags, ["team=a", "ci"]);
    assert.deepEqual((await daemon.client.updateTags(vm, { add: ["ci", "x"] })).tags, ["team=a", "ci", "x"], "no duplicates");
    assert.deepEqual((await daemon.client.updateTags(vm, { remove: ["ci"] })).tags, ["team=a", "x"]);
    assert.deepEqual(
      (await daemon.client.nodes({ tag: "team=a" })).map((n) => n.hostname),
      [vm],
    );
    assert.deepEqual((await daemon.client.updateTags(vm, { replace: ["only"] })).tags, ["only"]);
    assert.deepEqual((await daemon.client.updateTags(vm, { replace: [] })).tags, []);
    await assert.rejects(daemon.client.updateTags(vm, { add: ["a"], remove: ["b"] }), { status: 400, message: /exactly one/ });
    await assert.rejects(daemon.client.updateTags(vm, {}), { status: 400, message: /exactly one/ });
    await assert.rejects(daemon.client.updateTags(vm, { add: [""] }), { status: 400 });
    await assert.rejects(daemon.client.updateTags("nope-1", { add: ["a"] }), { status: 404 });
  });

  test("stats: a snapshot read in the guest, in Slicer's shape", async () => {
    const [all, one] = await Promise.all([daemon.client.stats(), daemon.client.nodeStats(vm)]);
    assert.equal(all.length, 1);
    const snap = one.snapshot;
    assert.ok(snap, one.error);
    assert.equal(snap.hostname, vm);
    assert.equal(snap.arch, "x86_64");
    assert.equal(snap.totalCpus, 1);
    assert.ok(snap.totalMemory > 400 * 1024 * 1024 && snap.totalMemory <= 512 * 1024 * 1024, `totalMemory ${snap.totalMemory}`);
    assert.ok(snap.memoryUsed > 0 && snap.memoryUsed < snap.totalMemory);
    assert.ok(snap.diskSpaceTotal > 3 * 1024 ** 3, "the 4 GiB root disk");
    assert.ok(snap.diskReadTotal > 0, "the boot read the disk");
    assert.ok(snap.openFiles > 0);
    assert.match(snap.uptime, /^(\d+m)?\d+(\.\d+)?s$/);
    assert.ok(Math.abs(Date.parse(snap.timestamp) - Date.now()) < 5000);
    const raw = await request(`${daemon.url}/node/${vm}/stats`);
    assert.ok(Array.isArray(await raw.body.json()), "the single-VM route answers a list (Slicer's Go SDK decodes one)");
    await assert.rejects(daemon.client.nodeStats("nope-1"), { status: 404 });
  });

  test("metrics in Prometheus format count VMs, launches and API requests", async () => {
    const text = await daemon.client.metrics();
    assert.match(text, /^corral_vm_running 1$/m);
    assert.match(text, /^corral_vms\{state="running"\} 1$/m);
    assert.match(text, /^corral_vm_launch_total\{hostgroup="sbox",outcome="started"\} [3-9]$/m);
    assert.match(text, /^corral_api_requests_total\{method="POST",route="\/vm\/:hostname\/exec",status="200"\} \d+$/m);
    assert.match(text, /^corral_api_requests_total\{method="PATCH",route="\/vm\/:hostname\/tags",status="400"\} \d+$/m);
    assert.match(text, /^corral_api_request_duration_seconds_bucket\{le="0\.1",method="GET",route="\/nodes\/stats"\} \d+$/m);
    assert.match(text, /^corral_host_load1 [\d.]+$/m);
    assert.match(text, /^corral_host_memory_available_bytes \d+$/m);
    assert.match(text, /^process_resident_memory_bytes \d+$/m);
  });

  test("/openapi.json describes every route from its schemas", async () => {
    const doc = (await (await request(`${daemon.url}/openapi.json`)).body.json()) as {
      openapi: string;
      paths: Record<string, Record<string, { parameters?: { name: string }[] }>>;
    };
    assert.equal(doc.openapi, "3.0.3");
    const expected: Record<string, string[]> = {
      "/healthz": ["get"],
      "/info": ["get"],
      "/metrics": ["get"],
      "/hostgroup": ["get"],
      "/nodes": ["get"],
      "/hostgroup/{name}/nodes": ["get", "post"],
      "/hostgroup/{name}/nodes/{hostname}": ["delete"],
      "/vm/{hostname}": ["get"],
      "/vm/{hostname}/health": ["get"],
      "/vm/{hostname}/logs": ["get"],
      "/vm/{hostname}/exec": ["post"],
      "/vm/{hostname}/pause": ["post"],
      "/vm/{hostname}/resume": ["post"],
      "/vm/{hostname}/shutdown": ["post"],
      "/vm/{hostname}/relaunch": ["post"],
      "/vm/{hostname}/suspend": ["post"],
      "/vm/{hostname}/restore": ["post"],
      "/vm/{hostname}/tags": ["get", "patch"],
      "/nodes/stats": ["get"],
      "/node/{hostname}/stats": ["get"],
    };
    for (const [path, methods] of Object.entries(expected)) {
      for (const method of methods) assert.ok(doc.paths[path]?.[method], `${method.toUpperCase()} ${path} is documented`);
    }
    const exec = doc.paths["/vm/{hostname}/exec"]?.post;
    assert.deepEqual(
      exec?.parameters
        ?.map((p) => p.name)
        .filter((n) => ["cmd", "args", "env", "stdin", "stdio", "buffered"].includes(n))
        .sort(),
      ["args", "buffered", "cmd", "env", "stdin", "stdio"],
    );
  });

  test("import_user creates a login user who gets the SSH keys", async () => {
    const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHQ8b1Xz0GZ6Bq7k9VbTq1rYw3u4mJr2gkm5hT2xq1bC alice@test";
    const created = await daemon.client.createNode("sbox", { import_user: "alice", ssh_keys: [key] }, { wait: "agent", timeout: "120s" });
    const host = created.hostname;
    assert.equal(await sh(daemon, host, "id -u alice; id -g alice"), "1000\n1000");
    assert.equal(await sh(daemon, host, "grep ^alice: /etc/passwd"), "alice:x:1000:1000::/home/alice:/bin/sh");
    assert.equal(await sh(daemon, host, "grep ^alice: /etc/shadow | cut -d: -f2"), "*", "no password, but not locked (dropbear accepts keys)");
    assert.equal(await sh(daemon, host, "cat /home/alice/.ssh/authorized_keys"), key);
    assert.equal(await sh(daemon, host, "stat -c '%U %a' /home/alice/.ssh /home/alice/.ssh/authorized_keys"), "alice 700\nalice 600");
    assert.equal(await sh(daemon, host, "test -e /root/.ssh/authorized_keys && echo yes || echo no"), "no", "the keys went to alice, not root");
    const whoami = await daemon.client.execBuffered(host, { cmd: "whoami", uid: 1000, gid: 1000 });
    assert.equal(whoami.stdout, "alice\n");
    await daemon.client.deleteNode("sbox", host);
  });

  test("the state directory keeps its secrets to itself", () => {
    assert.equal(statSync(daemon.stateDir).mode & 0o077, 0, "the state directory is private to its owner");
  });
});
