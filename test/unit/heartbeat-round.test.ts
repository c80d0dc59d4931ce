// A heartbeat round over a real SQLite store and fake hosts: how many hosts it asks at once, that hosts slow
// to answer do not hold up the others, and that each answer (or failure) is written for its host.
import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openFleetStore, type FleetStore, type NewHost } from "../../src/controller/db/index.ts";
import { FleetEvents } from "../../src/controller/events.ts";
import { Heartbeats } from "../../src/controller/heartbeat.ts";
import type { HostDriver, HostDrivers } from "../../src/controller/host-driver.ts";
import type { HostReport } from "../../src/controller/host-report.ts";
import { createLogger } from "../../src/util/log.ts";

const logger = createLogger({ level: "error", destination: process.stderr });
const dirs: string[] = [];
after(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

function report(id: string): HostReport {
  return {
    id,
    hostname: `${id}.example`,
    cpu_total: 8,
    cpu_used: 0,
    mem_total: 16384,
    mem_used: 0,
    disk_total: 200_000,
    disk_used: 0,
    vm_count: 0,
    engines: ["qemu"],
    storage: "file",
    images: ["base"],
  };
}

function newHost(id: string): NewHost {
  return { id, addr: `${id}.example:8080`, uri: `http://${id}.example:8080`, kind: "corral", state: "online", hostname: `${id}.example`, info: report(id) };
}

/** Hosts that answer after `delayMs(id)` (or fail when it is negative), counting the questions under way. */
function fakeDrivers(delayMs: (id: string) => number): { drivers: HostDrivers; most: () => number } {
  let asking = 0;
  let most = 0;
  const answer = async <T>(id: string, value: T): Promise<T> => {
    most = Math.max(most, ++asking);
    const ms = delayMs(id);
    await new Promise((resolve) => setTimeout(resolve, Math.abs(ms)));
    asking--;
    if (ms < 0) throw new Error(`connect ECONNREFUSED ${id}`);
    return value;
  };
  const driver = (id: string) => ({ kind: "corral", info: () => answer(id, report(id)), vms: () => answer(id, []) }) as unknown as HostDriver;
  return { drivers: { forHost: (host: { id: string }) => driver(host.id) } as unknown as HostDrivers, most: () => most / 2 };
}

async function storeWith(ids: string[]): Promise<FleetStore> {
  const dir = await mkdtemp(join(tmpdir(), "corral-heartbeat-"));
  dirs.push(dir);
  const store = await openFleetStore({ stateDir: dir, logger });
  for (const id of ids) await store.insertHost({ ...newHost(id), state: "offline" });
  return store;
}

describe("Heartbeats.beatAll", () => {
  test("asks at most 16 hosts at once and records each answer", async () => {
    const ids = Array.from({ length: 40 }, (_, i) => `h${String(i).padStart(2, "0")}`);
    const store = await storeWith(ids);
    try {
      const { drivers, most } = fakeDrivers(() => 5);
      await new Heartbeats({ store, drivers, events: new FleetEvents(store, logger), log: logger }).beatAll();
      // Fewer when the first beats' reads take long (the loop's share paces them); never more.
      assert.ok(most() <= 16 && most() > 1, `${most()} hosts asked at once`);
      for (const host of await store.listHosts()) assert.deepEqual([host.state, host.failures, host.lastError], ["online", 0, null], host.id);
    } finally {
      await store.close();
    }
  });

  test("hosts slow to answer give their places up: the others are asked meanwhile", async () => {
    // 16 hosts that answer after 1.5 s would fill every place until then.
    const ids = Array.from({ length: 40 }, (_, i) => `h${String(i).padStart(2, "0")}`);
    const slow = new Set(ids.slice(0, 16));
    const store = await storeWith(ids);
    try {
      const { drivers } = fakeDrivers((id) => (slow.has(id) ? -1500 : 5));
      const round = new Heartbeats({ store, drivers, events: new FleetEvents(store, logger), log: logger }).beatAll();
      await new Promise((resolve) => setTimeout(resolve, 1300));
      const before = await store.listHosts();
      assert.deepEqual(
        before.filter((h) => h.state === "online").map((h) => h.id),
        ids.slice(16),
        "every fast host answered before the slow ones did",
      );
      await round;
      const after = await store.listHosts();
      for (const host of after.filter((h) => slow.has(h.id))) assert.deepEqual([host.failures, host.lastError], [1, `connect ECONNREFUSED ${host.id}`], host.id);
    } finally {
      await store.close();
    }
  });
});
