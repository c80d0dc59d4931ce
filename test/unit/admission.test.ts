// Admission control's decisions, with the host's memory and disk given as numbers: the group limit, the
// memory reserve and the reservations of VMs still starting (so that concurrent creates cannot all pass),
// background work that leaves room for a user's VM, the state directory's free space, and the messages.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Admission, QEMU_OVERHEAD_BYTES, readMemAvailable, type AdmissionRequest } from "../../src/daemon/admission.ts";
import type { HostGroupConfig } from "../../src/daemon/config.ts";
import { CorralError } from "../../src/protocol/errors.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

const group = (fields: Partial<HostGroupConfig> = {}): HostGroupConfig => ({
  name: "sbox",
  count: 0,
  vcpu: 2,
  ramBytes: 2 * GiB,
  persistent: false,
  userdata: undefined,
  image: "base",
  sshKeys: [],
  template: true,
  warmPool: 0,
  lifetimeMs: null,
  maxLifetimeMs: null,
  maxVms: undefined,
  network: { mode: "user" },
  dnsServers: [],
  ...fields,
});

interface Host {
  memAvailable: number;
  freeDisk: number;
  active: number;
  refused: string[];
}

function admissionFor(host: Host, config = { memoryReserveBytes: 512 * MiB, minFreeDiskBytes: 1 * GiB }): Admission {
  return new Admission({
    config,
    stateDir: "/var/lib/corral/daemon",
    activeInGroup: () => host.active,
    memAvailable: () => host.memAvailable,
    freeDisk: () => host.freeDisk,
    onRefused: (code, priority) => host.refused.push(`${code}/${priority}`),
  });
}

const userCreate = (g: HostGroupConfig, ramBytes = g.ramBytes): AdmissionRequest => ({
  what: `a new VM in host group "${g.name}"`,
  group: g,
  ramBytes,
  priority: "user",
  joinsGroup: true,
});

function refusal(fn: () => unknown): CorralError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof CorralError, String(err));
    return err;
  }
  assert.fail("expected a refusal");
}

describe("admission control", () => {
  test("50 creates at once on a 24 GiB host: only what fits is admitted, the rest get 429 insufficient_memory", () => {
    const host: Host = { memAvailable: 24 * GiB, freeDisk: 100 * GiB, active: 0, refused: [] };
    const admission = admissionFor(host);
    const g = group();
    const outcomes = Array.from({ length: 50 }, () => admission.tryAdmit(userCreate(g)));
    const admitted = outcomes.filter((o) => "reservation" in o).length;
    // MemAvailable does not move while they start: each one's reservation counts against the next.
    assert.equal(admitted, Math.floor((24 * GiB - 512 * MiB) / (2 * GiB + QEMU_OVERHEAD_BYTES)));
    assert.equal(admitted, 11);
    for (const o of outcomes.filter((x) => "refused" in x)) {
      const err = (o as { refused: CorralError }).refused;
      assert.equal(err.code, "insufficient_memory");
      assert.equal(err.status, 429);
      assert.ok(err.retryAfterSeconds !== undefined && err.retryAfterSeconds > 0);
    }
    assert.equal(host.refused.length, 39);
    assert.equal(admission.startingBytes, 11 * (2 * GiB + QEMU_OVERHEAD_BYTES));
  });

  test("a reservation is held until released; once the VMs run, MemAvailable tells what they use", () => {
    const host: Host = { memAvailable: 5 * GiB, freeDisk: 100 * GiB, active: 0, refused: [] };
    const admission = admissionFor(host);
    const g = group();
    const first = admission.admit(userCreate(g));
    const second = admission.admit(userCreate(g));
    refusal(() => admission.admit(userCreate(g)));
    // The two started and use 300 MiB each: the kernel says so, and their reservations end.
    host.memAvailable -= 600 * MiB;
    first.release();
    second.release();
    second.release(); // idempotent
    assert.equal(admission.startingBytes, 0);
    admission.admit(userCreate(g));
  });

  test("the message gives the numbers", () => {
    const host: Host = { memAvailable: 900 * MiB, freeDisk: 100 * GiB, active: 0, refused: [] };
    const admission = admissionFor(host);
    const small = group({ ramBytes: 256 * MiB });
    admission.admit(userCreate(small));
    const err = refusal(() => admission.admit(userCreate(small)));
    assert.equal(
      err.message,
      'Cannot start a new VM in host group "sbox": it may take 320 MiB (256 MiB of RAM and 64 MiB for QEMU), the host has 900 MiB available, ' +
        "512 MiB kept for the host (admission.memory_reserve_mb) and 320 MiB held by VMs still starting, leaving 68 MiB",
    );
  });

  test("max_vms: a group at its limit is 429 hostgroup_full; VMs that do not join the group are not counted", () => {
    const host: Host = { memAvailable: 100 * GiB, freeDisk: 100 * GiB, active: 3, refused: [] };
    const admission = admissionFor(host);
    const g = group({ maxVms: 3 });
    const err = refusal(() => admission.admit(userCreate(g)));
    assert.equal(err.code, "hostgroup_full");
    assert.equal(err.message, 'Cannot start a new VM in host group "sbox": the group is full (3 VMs running or starting, max_vms is 3); delete one or retry later');
    assert.ok(err.retryAfterSeconds);
    admission.admit({ ...userCreate(g), what: "a warm-pool clone", priority: "background", joinsGroup: false });
    host.active = 2;
    admission.admit(userCreate(g));
    assert.deepEqual(host.refused, ["hostgroup_full/user"]);
  });

  test("background work leaves room for one more VM of its group; a user's create may take the last place", () => {
    const host: Host = { memAvailable: 512 * MiB + 3 * (2 * GiB + QEMU_OVERHEAD_BYTES), freeDisk: 100 * GiB, active: 0, refused: [] };
    const admission = admissionFor(host);
    const g = group();
    const pool = { ...userCreate(g), what: 'a warm-pool clone of host group "sbox"', priority: "background" as const, joinsGroup: false };
    admission.admit(pool);
    admission.admit(pool);
    const skipped = refusal(() => admission.admit(pool));
    assert.equal(skipped.code, "insufficient_memory");
    assert.match(skipped.message, /background work leaves 2112 MiB for a VM of the group/);
    admission.admit(userCreate(g));
    assert.deepEqual(host.refused, ["insufficient_memory/background"]);
  });

  test("a state directory short of space is 507 insufficient_storage; a template also needs its RAM file's size", () => {
    const host: Host = { memAvailable: 100 * GiB, freeDisk: 1500 * MiB, active: 0, refused: [] };
    const admission = admissionFor(host);
    const g = group({ ramBytes: 1 * GiB });
    admission.admit(userCreate(g));
    const template = refusal(() =>
      admission.admit({ what: 'the template of host group "sbox"', group: g, ramBytes: g.ramBytes, priority: "background", joinsGroup: false, extraDiskBytes: g.ramBytes }),
    );
    assert.equal(template.code, "insufficient_storage");
    assert.equal(template.status, 507);
    assert.equal(
      template.message,
      'Cannot start the template of host group "sbox": the state directory /var/lib/corral/daemon has 1500 MiB free, less than the 1024 MiB kept for VMs\' disks (admission.min_free_disk_mb) plus 1024 MiB for its RAM file; free space there',
    );
    host.freeDisk = 1000 * MiB;
    assert.equal(refusal(() => admission.admit(userCreate(g))).code, "insufficient_storage");
  });

  test("pressure: memory below the reserve, disk below the minimum", () => {
    const host: Host = { memAvailable: 400 * MiB, freeDisk: 2 * GiB, active: 0, refused: [] };
    const admission = admissionFor(host);
    assert.deepEqual(admission.pressure(), {
      memory_available_bytes: 400 * MiB,
      memory_reserve_bytes: 512 * MiB,
      memory_starting_bytes: 0,
      memory_pressure: true,
      state_dir_free_bytes: 2 * GiB,
      min_free_disk_bytes: 1 * GiB,
      disk_pressure: false,
    });
  });

  test("MemAvailable is read from /proc/meminfo's format, in bytes", async () => {
    const dir = await mkdtemp(join(tmpdir(), "corral-meminfo-"));
    try {
      const file = join(dir, "meminfo");
      await writeFile(file, "MemTotal:       24683752 kB\nMemFree:        20987960 kB\nMemAvailable:   23367656 kB\nBuffers:          123 kB\n");
      assert.equal(readMemAvailable(file), 23367656 * 1024);
      await writeFile(file, "MemTotal: 1 kB\n");
      assert.throws(() => readMemAvailable(file), /has no MemAvailable line/);
      assert.ok(readMemAvailable() > 0, "this host's");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
