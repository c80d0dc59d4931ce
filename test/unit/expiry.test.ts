// The expiry reaper over a real VM store with a fake clock, and recovery's handling of VMs whose create
// was never answered: a VM nobody was told about never survives a daemon restart.
import { describe, test, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { ExpiryReaper } from "../../src/daemon/vm/expiry-reaper.ts";
import { recoverVms } from "../../src/daemon/vm/recovery.ts";
import { QEMU_BINARY, QemuEngine } from "../../src/engine/index.ts";
import { VmStore, type VmRecord } from "../../src/daemon/vm/vm-store.ts";
import { newVm } from "../helpers/new-vm.ts";

const quiet = pino({ level: "silent" });

describe("ExpiryReaper", () => {
  let dir = "";
  let store: VmStore;
  let now = new Date("2030-01-01T00:00:00.000Z");

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-expiry-test-"));
    now = new Date("2030-01-01T00:00:00.000Z");
    store = new VmStore(join(dir, "corral.db"), () => now);
  });

  afterEach(async () => {
    store.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("a sweep expires exactly the VMs that are due, and a failure is retried at the next sweep", async () => {
    store.insertSandbox(newVm({ lifetimeMs: 10_000 }), 0);
    store.insertSandbox(newVm({ lifetimeMs: 60_000 }), 0);
    store.insertSandbox(newVm(), 0);
    let failOnce = true;
    const expired: string[] = [];
    const reaper = new ExpiryReaper({
      store,
      log: quiet,
      now: () => now,
      expire: async (record: VmRecord) => {
        if (record.hostname === "sbox-1" && failOnce) {
          failOnce = false;
          throw new Error("busy");
        }
        expired.push(record.hostname);
        store.delete(record.hostname, record.incarnation);
      },
    });
    await reaper.sweep();
    assert.deepEqual(expired, [], "nothing is due yet");
    now = new Date("2030-01-01T00:00:10.000Z");
    await reaper.sweep();
    assert.deepEqual(expired, [], "the first try failed");
    await reaper.sweep();
    assert.deepEqual(expired, ["sbox-1"]);
    now = new Date("2030-01-02T00:00:00.000Z");
    await reaper.sweep();
    assert.deepEqual(expired, ["sbox-1", "sbox-2"]);
    assert.deepEqual(
      store.list().map((r) => r.hostname),
      ["sbox-3"],
      "a VM without a lifetime stays",
    );
  });

  test("sweeps do not overlap; the interval keeps sweeping until stopped", async () => {
    store.insertSandbox(newVm({ lifetimeMs: 1000 }), 0);
    now = new Date("2030-01-01T01:00:00.000Z");
    let calls = 0;
    let release: () => void = () => undefined;
    const reaper = new ExpiryReaper({
      store,
      log: quiet,
      now: () => now,
      intervalMs: 10,
      expire: async (record: VmRecord) => {
        calls++;
        await new Promise<void>((done) => (release = done));
        store.delete(record.hostname, record.incarnation);
      },
    });
    reaper.start();
    while (calls === 0) await new Promise((r) => setTimeout(r, 5));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(calls, 1, "a slow expiry is not started twice");
    release();
    await reaper.stop();
    assert.deepEqual(store.list(), []);
  });
});

describe("recovery of unanswered creates", () => {
  let dir = "";
  let store: VmStore;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-recover-test-"));
    store = new VmStore(join(dir, "corral.db"));
  });

  afterEach(async () => {
    store.close();
    await rm(dir, { recursive: true, force: true });
  });

  test("an unacknowledged VM goes whatever its state and kind; an acknowledged one is settled as before", async () => {
    // Three VMs whose QEMU is gone (no pid): a persistent one never answered, one answered, and a sandbox
    // never answered that got as far as "running".
    const unanswered = store.insertNamed("api-1", newVm({ persistent: true, acknowledged: false }));
    const answered = store.insertNamed("api-2", newVm({ persistent: true }));
    const running = store.insertSandbox(newVm({ acknowledged: false }), 0);
    for (const record of [unanswered, answered, running]) {
      const booting = store.transition(record, "booting");
      if (record === running) store.transition(booting, "running");
      await mkdir(join(dir, "vms", record.hostname), { recursive: true });
      await writeFile(join(dir, "vms", record.hostname, "disk.qcow2"), "disk");
    }
    const recovered = await recoverVms(new QemuEngine({ binary: QEMU_BINARY, accel: { accel: "tcg" } }), dir, store, quiet);
    assert.deepEqual(recovered, []);
    assert.deepEqual(
      store.list().map((r) => [r.hostname, r.state]),
      [["api-2", "stopped"]],
    );
    assert.equal(existsSync(join(dir, "vms", "api-1")), false);
    assert.equal(existsSync(join(dir, "vms", running.hostname)), false);
    assert.equal(existsSync(join(dir, "vms", "api-2", "disk.qcow2")), true, "an answered persistent VM keeps its disk");
  });
});
