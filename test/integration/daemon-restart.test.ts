// The daemon can stop at any moment: services come back after a restart, VMs that survived a kill -9 are
// re-attached without a reboot, and the debris of half-done work is cleaned up.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { VmStore } from "../../src/daemon/vm/vm-store.ts";
import { CorralClient } from "../../src/sdk/index.ts";
import { qemuPids, TestDaemon } from "../helpers/daemon-process.ts";

const CONFIG = `config:
  host_groups:
    - name: svc
      image: base
      count: 2
      vcpu: 1
      ram_mb: 512
      userdata: |
        echo "userdata ran at $(cat /proc/uptime)" >> /root/userdata-runs
    - name: sbox
      image: base
      count: 0
      vcpu: 1
      ram_mb: 512
`;

async function untilReady(daemon: TestDaemon, hostname: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      await daemon.client.health(hostname);
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(250);
    }
  }
}

async function exec(daemon: TestDaemon, hostname: string, script: string): Promise<string> {
  const result = await daemon.client.execBuffered(hostname, { cmd: "sh", args: ["-c", script] });
  assert.equal(result.exit_code, 0, `${script}: ${result.stderr}`);
  return result.stdout.trim();
}

describe("daemon restarts", { timeout: 900_000 }, () => {
  let daemon: TestDaemon;

  before(async () => {
    daemon = await TestDaemon.create(CONFIG);
    await daemon.start();
  });

  after(async () => {
    await daemon.dispose();
  });

  test("services start with the daemon and cannot be deleted through the API", async () => {
    await untilReady(daemon, "svc-1");
    await untilReady(daemon, "svc-2");
    const nodes = await daemon.client.groupNodes("svc");
    assert.deepEqual(
      nodes.map((n) => [n.hostname, n.status, n.persistent]),
      [
        ["svc-1", "Running", true],
        ["svc-2", "Running", true],
      ],
    );
    await assert.rejects(daemon.client.deleteNode("svc", "svc-1"), { status: 403, code: "forbidden" });
    const groups = await daemon.client.hostGroups();
    assert.equal(groups.find((g) => g.name === "svc")?.count, 2);
  });

  test("services come back after a graceful restart with their disks", async () => {
    await exec(daemon, "svc-1", "echo kept > /root/state; sync");
    const bootBefore = await exec(daemon, "svc-1", "cat /proc/sys/kernel/random/boot_id");
    assert.equal(await daemon.stop(), 0);
    assert.deepEqual(qemuPids(daemon.stateDir), [], "a graceful stop powers services off");
    await daemon.start();
    await untilReady(daemon, "svc-1");
    assert.equal(await exec(daemon, "svc-1", "cat /root/state"), "kept");
    assert.equal(await exec(daemon, "svc-1", "wc -l < /root/userdata-runs"), "1", "userdata ran once, on the first boot only");
    assert.equal((await daemon.client.health("svc-1")).userdata_ran, true);
    assert.notEqual(await exec(daemon, "svc-1", "cat /proc/sys/kernel/random/boot_id"), bootBefore, "it booted again");
  });

  test("after kill -9 running VMs are re-attached: exec works without a reboot", async () => {
    const sandbox = await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "120s" });
    await untilReady(daemon, "svc-2");
    const boots = {
      sandbox: await exec(daemon, sandbox.hostname, "echo $$ > /tmp/marker; cat /proc/sys/kernel/random/boot_id"),
      service: await exec(daemon, "svc-2", "cat /proc/sys/kernel/random/boot_id"),
    };
    const pidsBefore = qemuPids(daemon.stateDir).sort();
    await daemon.kill9();
    assert.deepEqual(qemuPids(daemon.stateDir).sort(), pidsBefore, "VMs outlive a killed daemon");
    await daemon.start();
    assert.deepEqual(qemuPids(daemon.stateDir).sort(), pidsBefore, "the same QEMU processes, not new ones");
    assert.equal(await exec(daemon, sandbox.hostname, "cat /proc/sys/kernel/random/boot_id"), boots.sandbox);
    assert.match(await exec(daemon, sandbox.hostname, "cat /tmp/marker"), /^\d+$/);
    assert.equal(await exec(daemon, "svc-2", "cat /proc/sys/kernel/random/boot_id"), boots.service);
    assert.match(daemon.log, /Re-attached to a running VM/);
  });

  // The agent's port relay (see src/guest/port-io.ts) holds bytes in its pipes: those of a half-sent download
  // reach the next daemon before READY (its handshake discards them), those of a half-received upload are
  // dropped with the connection. Neither may leak into the next session, and the agent must carry on. The next
  // daemon's HELLO can come right behind the old daemon's last bytes, before the agent saw it go (observed).
  test("a daemon killed mid-copy, both ways: the next daemon copies through the same agent, byte for byte", async (t) => {
    const sandbox = await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "120s" });
    t.after(() => daemon.client.deleteNode("sbox", sandbox.hostname).catch(() => undefined)); // the next test counts VMs
    const serial = await readFile(join(daemon.stateDir, "vms", sandbox.hostname, "serial.log"), "utf8");
    assert.match(serial, /serving on \/dev\/vport\S+ \(relay\)/, "the agent moves its bytes through the native relay");
    const sum = await exec(daemon, sandbox.hostname, "head -c 33554432 /dev/urandom > /root/big && sha256sum /root/big | cut -d' ' -f1");

    // The copies' own client: the daemon's is closed gracefully by kill9(), which would wait for them forever.
    const copier = new CorralClient({ url: daemon.url });
    const download = await copier.fs.readFile(sandbox.hostname, "/root/big");
    let downloaded = 0;
    let killed = (): void => undefined;
    const afterKill = new Promise<void>((resolve) => {
      killed = resolve;
    });
    const reading = (async () => {
      for await (const chunk of download.body) {
        downloaded += (chunk as Buffer).length;
        if (downloaded >= 4 * 1024 * 1024) await afterKill; // stop reading, not cancel: the agent's writes back up
      }
    })().catch(() => undefined);
    const endless = new Readable({
      read() {
        this.push(Buffer.alloc(64 * 1024, 120));
      },
    });
    const uploading = copier.fs.writeFile(sandbox.hostname, "/root/half", endless).catch((err: Error) => err);
    const deadline = Date.now() + 60_000;
    while (downloaded < 4 * 1024 * 1024 && Date.now() < deadline) await sleep(50);
    assert.ok(downloaded >= 4 * 1024 * 1024, "the download never got going");
    await sleep(1000); // the upload is under way too
    await daemon.kill9();
    killed();
    endless.destroy();
    await Promise.all([reading, uploading]); // both fail with the daemon
    await copier.close();
    await daemon.start();

    assert.equal(await exec(daemon, sandbox.hostname, "echo alive"), "alive");
    const again = createHash("sha256");
    let size = 0;
    for await (const chunk of (await daemon.client.fs.readFile(sandbox.hostname, "/root/big")).body) {
      again.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    assert.equal(size, 33554432);
    assert.equal(again.digest("hex"), sum);
    const payload = randomBytes(3 * 1024 * 1024 + 17);
    await daemon.client.fs.writeFile(sandbox.hostname, "/root/small", payload);
    assert.equal(await exec(daemon, sandbox.hostname, "sha256sum /root/small | cut -d' ' -f1"), createHash("sha256").update(payload).digest("hex"));
    assert.equal(await exec(daemon, sandbox.hostname, "test -e /root/half && echo present || echo absent"), "absent", "a cut upload leaves no file");
  });

  test("a restart cleans up half-created VMs, orphan QEMU processes, stray folders and VMs that died meanwhile", async () => {
    const sandbox = (await daemon.client.nodes()).find((n) => n.hostgroup === "sbox");
    assert.ok(sandbox, "the sandbox of the previous test still runs");
    assert.equal(qemuPids(daemon.stateDir).length, 3, "two services and the sandbox run");
    await daemon.kill9();

    // A sandbox whose QEMU died while no daemon was watching.
    const store = new VmStore(join(daemon.stateDir, "corral.db"));
    const record = store.get(sandbox.hostname);
    assert.ok(record?.pid);
    process.kill(record.pid, "SIGKILL");
    // A create interrupted half-way: a record in state "creating" and its folder.
    const halfDone = store.insertSandbox({ ...record, hostgroup: "sbox", kind: "sandbox" }, 0);
    store.close();
    await mkdir(join(daemon.stateDir, "vms", halfDone.hostname), { recursive: true });
    await writeFile(join(daemon.stateDir, "vms", halfDone.hostname, "disk.qcow2"), "partial");
    // A folder nobody knows about, and a QEMU process of this state directory that no record owns.
    await mkdir(join(daemon.stateDir, "vms", "stray-7"), { recursive: true });
    const orphanDir = join(daemon.stateDir, "vms", "ghost-9");
    await mkdir(orphanDir, { recursive: true });
    const orphan = spawn("qemu-system-x86_64", ["-M", "none", "-nodefaults", "-display", "none", "-S", "-pidfile", join(orphanDir, "qemu.pid")], {
      stdio: "ignore",
      detached: true,
    });
    orphan.unref();
    await sleep(300);
    assert.ok(qemuPids(daemon.stateDir).includes(orphan.pid as number));

    await daemon.start();
    const names = (await daemon.client.nodes()).map((n) => n.hostname).sort();
    assert.deepEqual(names, ["svc-1", "svc-2"], "the dead sandbox and the half-created one are gone");
    assert.deepEqual((await readdir(join(daemon.stateDir, "vms"))).sort(), ["svc-1", "svc-2"]);
    assert.equal(qemuPids(daemon.stateDir).includes(orphan.pid as number), false, "the orphan QEMU was killed");
    assert.equal(existsSync(join(daemon.stateDir, "vms", halfDone.hostname)), false);
    await exec(daemon, "svc-1", "true");
  });
});
