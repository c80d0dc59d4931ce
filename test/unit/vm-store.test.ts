import { test, describe, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { CorralError } from "../../src/protocol/errors.ts";
import { VmStore, type VmRecord } from "../../src/daemon/vm/vm-store.ts";
import { newVm } from "../helpers/new-vm.ts";

/** A clock that moves one second per reading, from a fixed start. */
function fakeClock(start = Date.UTC(2024, 0, 1, 0, 0, 0)): { now: () => Date; readings: () => number } {
  let t = start;
  let n = 0;
  return {
    now: () => {
      n++;
      const d = new Date(t);
      t += 1000;
      return d;
    },
    readings: () => n,
  };
}

function isConflict(message: string | RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof CorralError, `expected a CorralError, got ${String(err)}`);
    assert.equal(err.code, "conflict");
    assert.equal(err.status, 409);
    if (typeof message === "string") assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  };
}

describe("VmStore", () => {
  let dir = "";
  let file = "";
  let store: VmStore;
  const open: VmStore[] = [];

  const openStore = (now?: () => Date): VmStore => {
    const s = new VmStore(file, now);
    open.push(s);
    return s;
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-vm-store-test-"));
    file = join(dir, "corral.db");
    store = openStore(fakeClock().now);
  });

  afterEach(async () => {
    for (const s of open.splice(0)) {
      try {
        s.close();
      } catch {
        // already closed by the test
      }
    }
    await rm(dir, { recursive: true, force: true });
  });

  describe("insertSandbox", () => {
    test("numbers sandboxes GROUP-1, GROUP-2, … per group", () => {
      assert.equal(store.insertSandbox(newVm(), 0).hostname, "sbox-1");
      assert.equal(store.insertSandbox(newVm(), 0).hostname, "sbox-2");
      assert.equal(store.insertSandbox(newVm({ hostgroup: "web" }), 0).hostname, "web-1");
      assert.equal(store.insertSandbox(newVm(), 0).hostname, "sbox-3");
      assert.equal(store.insertSandbox(newVm({ hostgroup: "web" }), 0).hostname, "web-2");
    });

    test("the new record starts in creating, with the store's next incarnation and every field stored", () => {
      const record = store.insertSandbox(
        newVm({
          cpus: 4,
          ramBytes: 512 * 1024 * 1024,
          persistent: true,
          userdata: "#!/bin/sh\necho hi\n",
          sshKeys: ["ssh-ed25519 AAA a", "k2"],
          tags: ["x=1", "y"],
          mac: "52:54:00:ab:cd:ef",
          accel: "kvm",
          imageVersion: "20240101",
        }),
        0,
      );
      assert.deepEqual(record, {
        hostname: "sbox-1",
        hostgroup: "sbox",
        kind: "sandbox",
        state: "creating",
        incarnation: 1,
        cpus: 4,
        ramBytes: 512 * 1024 * 1024,
        persistent: true,
        image: "base",
        imageVersion: "20240101",
        userdata: "#!/bin/sh\necho hi\n",
        sshKeys: ["ssh-ed25519 AAA a", "k2"],
        importUser: null,
        tags: ["x=1", "y"],
        ip: "10.0.2.15",
        mac: "52:54:00:ab:cd:ef",
        accel: "kvm",
        pid: null,
        pidStartTime: null,
        createdAt: "2024-01-01T00:00:00.000Z",
        updatedAt: "2024-01-01T00:00:00.000Z",
        lastError: null,
        template: null,
        machineId: "0123456789abcdef0123456789abcdef",
        origin: null,
        envId: null,
        diskMiB: null,
        portMap: [],
        denyOutgoing: false,
        acknowledged: true,
        expiresAt: null,
        networkPolicy: {},
      } satisfies VmRecord);
      assert.deepEqual(store.get("sbox-1"), record);
    });

    test("indexes up to `reserved` are left for the group's services", () => {
      assert.equal(store.insertSandbox(newVm({ hostgroup: "web" }), 3).hostname, "web-4");
      assert.equal(store.insertSandbox(newVm({ hostgroup: "web" }), 3).hostname, "web-5");
    });

    test("raising `reserved` later skips ahead; lowering it does not go back", () => {
      assert.equal(store.insertSandbox(newVm(), 0).hostname, "sbox-1");
      assert.equal(store.insertSandbox(newVm(), 5).hostname, "sbox-6");
      assert.equal(store.insertSandbox(newVm(), 0).hostname, "sbox-7");
    });

    test("numbers are never reused after a delete", () => {
      const first = store.insertSandbox(newVm(), 0);
      const second = store.insertSandbox(newVm(), 0);
      assert.equal(store.delete(second.hostname, second.incarnation), true);
      assert.equal(store.delete(first.hostname, first.incarnation), true);
      assert.equal(store.insertSandbox(newVm(), 0).hostname, "sbox-3");
      assert.deepEqual(
        store.list().map((r) => r.hostname),
        ["sbox-3"],
      );
    });

    test("names already taken (a service, say) are skipped", () => {
      store.insertNamed("sbox-1", newVm({ kind: "service" }));
      store.insertNamed("sbox-2", newVm({ kind: "service" }));
      store.insertNamed("sbox-4", newVm({ kind: "service" }));
      assert.equal(store.insertSandbox(newVm(), 0).hostname, "sbox-3");
      assert.equal(store.insertSandbox(newVm(), 0).hostname, "sbox-5");
    });

    test("two stores on one file never hand out the same name", () => {
      const other = openStore();
      const names = [store.insertSandbox(newVm(), 0), other.insertSandbox(newVm(), 0), store.insertSandbox(newVm(), 0), other.insertSandbox(newVm(), 0)].map((r) => r.hostname);
      assert.deepEqual(names, ["sbox-1", "sbox-2", "sbox-3", "sbox-4"]);
    });
  });

  describe("insertNamed", () => {
    test("inserts under the given name", () => {
      const record = store.insertNamed("web-1", newVm({ hostgroup: "web", kind: "service", persistent: true }));
      assert.equal(record.hostname, "web-1");
      assert.equal(record.kind, "service");
      assert.equal(record.state, "creating");
      assert.equal(record.persistent, true);
    });

    test("a taken name is a conflict and the existing record is untouched", () => {
      const original = store.insertNamed("web-1", newVm({ hostgroup: "web", kind: "service", cpus: 1 }));
      assert.throws(() => store.insertNamed("web-1", newVm({ hostgroup: "web", kind: "service", cpus: 8 })), isConflict('A VM named "web-1" already exists'));
      assert.deepEqual(store.get("web-1"), original);
    });

    test("a name freed by delete can be taken again by a service", () => {
      const record = store.insertNamed("web-1", newVm({ hostgroup: "web", kind: "service" }));
      assert.equal(store.delete("web-1", record.incarnation), true);
      assert.equal(store.insertNamed("web-1", newVm({ hostgroup: "web", kind: "service" })).hostname, "web-1");
    });
  });

  describe("get and list", () => {
    test("get of an unknown name is undefined", () => {
      assert.equal(store.get("nope-1"), undefined);
    });

    test("list is in creation order; listGroup filters by group", () => {
      store.insertSandbox(newVm({ hostgroup: "b" }), 0);
      store.insertSandbox(newVm({ hostgroup: "a" }), 0);
      store.insertSandbox(newVm({ hostgroup: "b" }), 0);
      assert.deepEqual(
        store.list().map((r) => r.hostname),
        ["b-1", "a-1", "b-2"],
      );
      assert.deepEqual(
        store.listGroup("b").map((r) => r.hostname),
        ["b-1", "b-2"],
      );
      assert.deepEqual(
        store.listGroup("a").map((r) => r.hostname),
        ["a-1"],
      );
      assert.deepEqual(store.listGroup("c"), []);
    });

    test("records are fresh objects: changing one does not change the store", () => {
      const record = store.insertSandbox(newVm({ tags: ["a"] }), 0);
      record.tags.push("b");
      record.state = "running";
      assert.deepEqual(store.get("sbox-1")?.tags, ["a"]);
      assert.equal(store.get("sbox-1")?.state, "creating");
    });
  });

  describe("transition", () => {
    test("moves the state, sets updatedAt and keeps createdAt", () => {
      const created = store.insertSandbox(newVm(), 0);
      const booting = store.transition(created, "booting");
      assert.equal(booting.state, "booting");
      assert.equal(booting.createdAt, "2024-01-01T00:00:00.000Z");
      assert.equal(booting.updatedAt, "2024-01-01T00:00:01.000Z");
      assert.deepEqual(store.get("sbox-1"), booting);
    });

    test("patches pid, pidStartTime, incarnation, imageVersion and lastError", () => {
      const created = store.insertSandbox(newVm({ imageVersion: "v1" }), 0);
      const booting = store.transition(created, "booting", { pid: 4242, pidStartTime: "123456", incarnation: 1, imageVersion: "v2", lastError: "old failure" });
      assert.deepEqual(
        [booting.state, booting.pid, booting.pidStartTime, booting.incarnation, booting.imageVersion, booting.lastError],
        ["booting", 4242, "123456", 1, "v2", "old failure"],
      );
      const running = store.transition(booting, "running");
      assert.deepEqual(
        [running.pid, running.pidStartTime, running.incarnation, running.imageVersion, running.lastError],
        [4242, "123456", 1, "v2", "old failure"],
        "fields not in the patch are kept",
      );
      const stopped = store.transition(running, "stopped", { pid: null, pidStartTime: null, lastError: null });
      assert.deepEqual([stopped.state, stopped.pid, stopped.pidStartTime, stopped.lastError, stopped.incarnation], ["stopped", null, null, null, 1], "null clears a field");
    });

    test("a forbidden move is a conflict and changes nothing", () => {
      const created = store.insertSandbox(newVm(), 0);
      assert.throws(() => store.transition(created, "running", { pid: 1 }), isConflict('Cannot move VM "sbox-1" from creating to running'));
      assert.deepEqual(store.get("sbox-1"), created);
    });

    test("a stale incarnation is a conflict and changes nothing", () => {
      const created = store.insertSandbox(newVm(), 0);
      const booting = store.transition(created, "booting", { incarnation: 1 });
      const failed = store.transition(booting, "failed");
      const rebooted = store.transition(failed, "booting", { incarnation: 2 });
      // A decision made about incarnation 1, while it was booting, must not land on incarnation 2.
      assert.throws(() => store.transition(booting, "running"), isConflict('VM "sbox-1" changed while it was being moved from booting to running'));
      assert.deepEqual(store.get("sbox-1"), rebooted);
    });

    test("a stale state is a conflict and changes nothing", () => {
      const created = store.insertSandbox(newVm(), 0);
      const booting = store.transition(created, "booting", { incarnation: 1 });
      const running = store.transition(booting, "running");
      assert.throws(() => store.transition(booting, "stopped", { pid: null }), isConflict('VM "sbox-1" changed while it was being moved from booting to stopped'));
      assert.deepEqual(store.get("sbox-1"), running);
    });

    test("a record recreated under the same name rejects the old record's moves while the new one is creating", () => {
      const old = store.insertNamed("web-1", newVm({ kind: "service" }));
      const booting = store.transition(old, "booting", { incarnation: 1 });
      assert.equal(store.delete("web-1", 1), true);
      const fresh = store.insertNamed("web-1", newVm({ kind: "service" }));
      assert.throws(() => store.transition(booting, "running"), isConflict('VM "web-1" changed while it was being moved from booting to running'));
      assert.deepEqual(store.get("web-1"), fresh);
    });

    test("a record recreated under the same name rejects the old record's moves once it boots too", () => {
      // The daemon launches a record with incarnation + 1 (vm-manager.ts launch), as here.
      const old = store.insertNamed("web-1", newVm({ kind: "service" }));
      const staleBooting = store.transition(old, "booting", { incarnation: old.incarnation + 1 });
      assert.equal(store.delete("web-1", staleBooting.incarnation), true);
      const fresh = store.insertNamed("web-1", newVm({ kind: "service" }));
      const freshBooting = store.transition(fresh, "booting", { incarnation: fresh.incarnation + 1 });
      // A decision made about the deleted VM (say, "its agent answered: running") must not land on the new one.
      assert.throws(() => store.transition(staleBooting, "running"), isConflict('VM "web-1" changed while it was being moved from booting to running'));
      assert.deepEqual(store.get("web-1"), freshBooting);
    });

    test("moving a deleted VM is a conflict", () => {
      const created = store.insertSandbox(newVm(), 0);
      assert.equal(store.delete("sbox-1", created.incarnation), true);
      assert.throws(() => store.transition(created, "booting"), isConflict('VM "sbox-1" changed while it was being moved from creating to booting'));
      assert.equal(store.get("sbox-1"), undefined);
    });

    test("a move only touches its own VM", () => {
      const a = store.insertSandbox(newVm(), 0);
      const b = store.insertSandbox(newVm(), 0);
      store.transition(a, "booting", { pid: 7 });
      assert.deepEqual(store.get(b.hostname), b);
    });
  });

  describe("recordError", () => {
    test("notes the error for the matching incarnation without changing the state", () => {
      const created = store.insertSandbox(newVm(), 0);
      const booting = store.transition(created, "booting", { incarnation: 1 });
      store.recordError("sbox-1", 1, "QEMU exited with status 1");
      const after = store.get("sbox-1");
      assert.equal(after?.lastError, "QEMU exited with status 1");
      assert.equal(after?.state, "booting");
      assert.equal(after?.incarnation, 1);
      assert.notEqual(after?.updatedAt, booting.updatedAt);
    });

    test("ignores a stale incarnation", () => {
      store.transition(store.insertSandbox(newVm(), 0), "booting", { incarnation: 2 });
      const before = store.get("sbox-1");
      store.recordError("sbox-1", 1, "stale");
      assert.deepEqual(store.get("sbox-1"), before);
    });

    test("an unknown VM is ignored", () => {
      assert.doesNotThrow(() => store.recordError("ghost-1", 0, "x"));
      assert.equal(store.get("ghost-1"), undefined);
    });
  });

  describe("delete", () => {
    test("deletes only the matching incarnation and says whether it did", () => {
      store.transition(store.insertSandbox(newVm(), 0), "booting", { incarnation: 3 });
      assert.equal(store.delete("sbox-1", 2), false);
      assert.equal(store.get("sbox-1")?.incarnation, 3);
      assert.equal(store.delete("sbox-1", 3), true);
      assert.equal(store.get("sbox-1"), undefined);
      assert.equal(store.delete("sbox-1", 3), false);
    });

    test("deleting an unknown VM is false", () => {
      assert.equal(store.delete("nope-1", 0), false);
    });
  });

  describe("meta", () => {
    test("get of an unset key is undefined; set then get; set again overwrites", () => {
      assert.equal(store.getMeta("boot_id"), undefined);
      store.setMeta("boot_id", "abc");
      assert.equal(store.getMeta("boot_id"), "abc");
      store.setMeta("boot_id", "def");
      assert.equal(store.getMeta("boot_id"), "def");
      store.setMeta("other", "");
      assert.equal(store.getMeta("other"), "");
      assert.equal(store.getMeta("boot_id"), "def");
    });
  });

  describe("persistence", () => {
    test("a reopened file has the records, the meta and the counters", () => {
      const a = store.insertSandbox(newVm({ sshKeys: ["k"], tags: ["t"], userdata: "u" }), 0);
      const b = store.transition(store.insertSandbox(newVm(), 0), "booting", { pid: 99, incarnation: 1 });
      store.setMeta("version", "1");
      store.delete(b.hostname, 1);
      store.close();

      const reopened = openStore(fakeClock(Date.UTC(2025, 0, 1)).now);
      assert.deepEqual(reopened.list(), [a]);
      assert.equal(reopened.getMeta("version"), "1");
      assert.equal(reopened.insertSandbox(newVm(), 0).hostname, "sbox-3", "numbers are not reused across restarts");
    });

    test("a TTstack VM keeps its environment, disk size, port map and outbound policy; the port map can change", () => {
      const record = store.insertNamed("env-1", { ...newVm({ hostgroup: "ttstack" }), envId: "env", diskMiB: 8192, portMap: [{ guest: 22, host: 40022 }], denyOutgoing: true });
      assert.deepEqual([record.envId, record.diskMiB, record.portMap, record.denyOutgoing], ["env", 8192, [{ guest: 22, host: 40022 }], true]);
      store.setPortMap("env-1", [{ guest: 22, host: 40023 }]);
      store.close();
      const reopened = openStore(fakeClock(Date.UTC(2025, 0, 1)).now);
      assert.deepEqual(reopened.get("env-1")?.portMap, [{ guest: 22, host: 40023 }]);
      assert.deepEqual(reopened.insertNamed("plain-1", newVm()).portMap, []);
    });

    test("the schema version is recorded and a newer one is refused", () => {
      store.close();
      const raw = new Database(file);
      assert.equal(raw.pragma("user_version", { simple: true }), 7);
      raw.pragma("user_version = 8");
      raw.close();
      assert.throws(() => new VmStore(file), { message: "The state database was written by a newer Corral (schema 8, this one knows 7)" });
    });

    test("the database uses write-ahead logging", () => {
      store.close();
      const raw = new Database(file);
      assert.equal(raw.pragma("journal_mode", { simple: true }), "wal");
      raw.close();
    });
  });

  describe("acknowledgement", () => {
    test("a VM made for a client is unacknowledged until its create is acknowledged; others are acknowledged", () => {
      const created = store.insertSandbox(newVm({ acknowledged: false }), 0);
      assert.equal(created.acknowledged, false);
      assert.equal(store.insertNamed("svc-1", newVm({ kind: "service" })).acknowledged, true);
      assert.equal(store.acknowledge(created.hostname, created.createdAt), true);
      assert.equal(store.get(created.hostname)?.acknowledged, true);
    });

    test("an acknowledgement meant for an earlier VM of the same name does not land", () => {
      const first = store.insertNamed("api-1", newVm({ acknowledged: false }));
      store.delete(first.hostname, first.incarnation);
      const second = store.insertNamed("api-1", newVm({ acknowledged: false }));
      assert.notEqual(second.createdAt, first.createdAt);
      assert.equal(store.acknowledge("api-1", first.createdAt), false);
      assert.equal(store.get("api-1")?.acknowledged, false);
      assert.equal(store.acknowledge("gone-1", first.createdAt), false);
    });

    test("the mark survives a reopen, and VMs from schema 5 count as acknowledged with no expiry", () => {
      store.insertSandbox(newVm({ acknowledged: false }), 0);
      store.insertSandbox(newVm({ lifetimeMs: 60_000 }), 0);
      store.close();
      assert.deepEqual(
        openStore()
          .list()
          .map((r) => [r.hostname, r.acknowledged]),
        [
          ["sbox-1", false],
          ["sbox-2", true],
        ],
      );
      // The same database as a schema-5 daemon left it: the columns of schema 6 dropped again.
      for (const s of open.splice(0)) s.close();
      const raw = new Database(file);
      raw.exec("DROP INDEX vms_by_expiry; ALTER TABLE vms DROP COLUMN acknowledged; ALTER TABLE vms DROP COLUMN expires_at; ALTER TABLE vms DROP COLUMN network;");
      raw.pragma("user_version = 5");
      raw.close();
      assert.deepEqual(
        openStore()
          .list()
          .map((r) => [r.hostname, r.acknowledged, r.expiresAt]),
        [
          ["sbox-1", true, null],
          ["sbox-2", true, null],
        ],
      );
    });
  });

  describe("expiry", () => {
    test("expires_at is created_at plus the lifetime; none without one", () => {
      const clock = fakeClock(Date.UTC(2030, 0, 1, 0, 0, 0));
      store.close();
      const s = openStore(clock.now);
      const timed = s.insertSandbox(newVm({ lifetimeMs: 90 * 60_000 }), 0);
      assert.equal(timed.createdAt, "2030-01-01T00:00:00.000Z");
      assert.equal(timed.expiresAt, "2030-01-01T01:30:00.000Z");
      assert.equal(s.insertSandbox(newVm({ lifetimeMs: null }), 0).expiresAt, null);
      assert.equal(s.insertSandbox(newVm(), 0).expiresAt, null);
    });

    test("listExpired returns the VMs due at a time, soonest first; setExpiry moves or clears an expiry", () => {
      const clock = fakeClock(Date.UTC(2030, 0, 1, 0, 0, 0));
      store.close();
      const s = openStore(clock.now);
      const a = s.insertSandbox(newVm({ lifetimeMs: 60_000 }), 0); // 00:01:00
      const b = s.insertSandbox(newVm({ lifetimeMs: 10_000 }), 0); // created a second later: 00:00:11
      s.insertSandbox(newVm(), 0);
      const at = (iso: string): string[] => s.listExpired(new Date(iso)).map((r) => r.hostname);
      assert.deepEqual(at("2030-01-01T00:00:10.999Z"), []);
      assert.deepEqual(at("2030-01-01T00:00:11.000Z"), [b.hostname]);
      assert.deepEqual(at("2030-01-02T00:00:00.000Z"), [b.hostname, a.hostname]);
      assert.equal(s.setExpiry(b.hostname, new Date("2030-01-01T05:00:00.000Z"))?.expiresAt, "2030-01-01T05:00:00.000Z");
      assert.deepEqual(at("2030-01-01T01:00:00.000Z"), [a.hostname]);
      assert.equal(s.setExpiry(a.hostname, null)?.expiresAt, null);
      assert.deepEqual(at("2030-01-01T01:00:00.000Z"), []);
    });

    test("a VM whose create is not yet acknowledged is not listed as expired until it is", () => {
      const clock = fakeClock(Date.UTC(2030, 0, 1, 0, 0, 0));
      store.close();
      const s = openStore(clock.now);
      const pending = s.insertSandbox(newVm({ lifetimeMs: 1000, acknowledged: false }), 0);
      assert.deepEqual(s.listExpired(new Date("2030-01-01T00:01:00.000Z")), []);
      assert.equal(s.acknowledge(pending.hostname, pending.createdAt), true);
      assert.deepEqual(
        s.listExpired(new Date("2030-01-01T00:01:00.000Z")).map((r) => r.hostname),
        [pending.hostname],
      );
    });
  });

  describe("clock", () => {
    test("timestamps come from the injected clock", () => {
      const clock = fakeClock(Date.UTC(2030, 5, 15, 12, 0, 0));
      store.close();
      const s = openStore(clock.now);
      const record = s.insertSandbox(newVm(), 0);
      assert.equal(record.createdAt, "2030-06-15T12:00:00.000Z");
      assert.equal(s.transition(record, "booting").updatedAt, "2030-06-15T12:00:01.000Z");
      assert.equal(clock.readings(), 2);
    });
  });

  describe("network (schema 7)", () => {
    test("the egress override and deny_outgoing are stored; the address a lease gave is set", () => {
      const record = store.insertSandbox(newVm({ networkPolicy: { drop: ["0.0.0.0/0"] } }), 0);
      assert.deepEqual(record.networkPolicy, { drop: ["0.0.0.0/0"] });
      assert.deepEqual(store.setNetworkPolicy(record.hostname, { allow: [] }, true)?.networkPolicy, { allow: [] });
      assert.equal(store.get(record.hostname)?.denyOutgoing, true);
      store.setAddress(record.hostname, "10.77.0.2", "02:fc:00:00:00:01");
      assert.deepEqual([store.get(record.hostname)?.ip, store.get(record.hostname)?.mac], ["10.77.0.2", "02:fc:00:00:00:01"]);
    });

    test("delete hooks run in the delete's transaction: a hook that fails keeps the record", () => {
      const record = store.insertSandbox(newVm(), 0);
      const seen: string[] = [];
      store.onDelete((hostname) => seen.push(hostname));
      let fail = true;
      store.onDelete(() => {
        if (fail) throw new Error("lease store failed");
      });
      assert.throws(() => store.delete(record.hostname, record.incarnation), /lease store failed/);
      assert.ok(store.get(record.hostname), "the record is still there");
      fail = false;
      assert.equal(store.delete(record.hostname, record.incarnation), true);
      assert.equal(store.delete(record.hostname, record.incarnation), false, "hooks only run for a delete that happened");
      assert.deepEqual(seen, [record.hostname, record.hostname]);
    });

    test("a schema-6 database gains the column with an empty override", () => {
      store.close();
      const db = new Database(file);
      db.exec("ALTER TABLE vms DROP COLUMN network");
      db.pragma("user_version = 6");
      db.close();
      const reopened = openStore();
      assert.deepEqual(reopened.list(), []);
      assert.deepEqual(reopened.insertSandbox(newVm(), 0).networkPolicy, {});
    });
  });
});
