// The fleet store's contract, run against SQLite and against a throwaway PostgreSQL; then what only
// PostgreSQL does: several controller processes sharing one database (placement, events, leadership).
import { test, describe, before, after, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import Database from "better-sqlite3";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CorralError, type ErrorCode } from "../../src/protocol/errors.ts";
import { canMoveEnv, ENV_STATES } from "../../src/protocol/env-lifecycle.ts";
import type { HostReport as HostInfo, ReportedVm as AgentVm } from "../../src/controller/host-report.ts";
import { createLogger } from "../../src/util/log.ts";
import { openFleetStore, parseStoreUrl, placeVms, type FleetStore, type FleetStoreOptions, type NewFleetVm, type NewHost } from "../../src/controller/db/index.ts";
import { freshPostgresDatabase, sharedPostgres, stopSharedPostgres } from "../helpers/postgres.ts";
import { until } from "../helpers/until.ts";

const START = Date.UTC(2030, 0, 1, 12, 0, 0);
const logger = createLogger({ level: "error", destination: process.stderr });

function info(id: string, totals: { cpu: number; mem: number; disk: number }, more: Partial<HostInfo> = {}): HostInfo {
  return {
    id,
    hostname: `${id}.example`,
    cpu_total: totals.cpu,
    cpu_used: 0,
    mem_total: totals.mem,
    mem_used: 0,
    disk_total: totals.disk,
    disk_used: 0,
    vm_count: 0,
    engines: ["qemu"],
    storage: "file",
    images: ["base"],
    ...more,
  };
}

function newHost(id: string, totals = { cpu: 8, mem: 16384, disk: 200_000 }, more: Partial<NewHost> = {}): NewHost {
  return { id, addr: `${id}.example:8080`, uri: `http://${id}.example:8080`, kind: "corral", state: "online", hostname: `${id}.example`, info: info(id, totals), ...more };
}

function vmSpec(id: string, more: Partial<NewFleetVm> = {}): NewFleetVm {
  return { id, image: "base", engine: "qemu", cpu: 2, mem: 1024, disk: 10240, ports: [22, 80], denyOutgoing: false, ...more };
}

const place = (hosts: Parameters<typeof placeVms>[0], specs: Parameters<typeof placeVms>[1]) => placeVms(hosts, specs);

function corralError(code: ErrorCode, message?: string | RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof CorralError, `expected a CorralError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (typeof message === "string") assert.equal(err.message, message);
    else if (message) assert.match(err.message, message);
    return true;
  };
}

interface Target {
  url?: string;
  stateDir: string;
}

/** The same cases for every database: `fresh` gives an empty one. */
function storeContract(name: string, fresh: () => Promise<Target>): void {
  describe(`FleetStore on ${name}`, { timeout: 60_000 }, () => {
    let target: Target;
    let clock = START;
    let store: FleetStore;
    const opened: FleetStore[] = [];

    const open = async (options: Partial<FleetStoreOptions> = {}): Promise<FleetStore> => {
      const s = await openFleetStore({ ...target, now: () => new Date(clock), logger, ...options });
      opened.push(s);
      return s;
    };

    beforeEach(async () => {
      clock = START;
      target = await fresh();
      store = await open();
    });

    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
    });

    test("hosts: insert, find, list, update", async () => {
      const inserted = await store.insertHost(newHost("h2", undefined, { token: "secret" }));
      assert.deepEqual(inserted, {
        id: "h2",
        addr: "h2.example:8080",
        uri: "http://h2.example:8080",
        token: "secret",
        kind: "corral",
        state: "online",
        hostname: "h2.example",
        info: info("h2", { cpu: 8, mem: 16384, disk: 200_000 }),
        vms: [],
        reserved: { cpu: 0, mem: 0, disk: 0 },
        failures: 0,
        disconnected: false,
        createdAt: "2030-01-01T12:00:00.000Z",
        registeredAt: "2030-01-01T12:00:00.000Z",
        lastSeenAt: null,
        lastError: null,
      });
      await store.insertHost(newHost("h1", undefined, { state: "offline", info: null }));
      assert.deepEqual(await store.getHost("h2"), inserted);
      assert.deepEqual(
        (await store.listHosts()).map((h) => [h.id, h.state, h.info?.cpu_total ?? null]),
        [
          ["h1", "offline", null],
          ["h2", "online", 8],
        ],
      );
      assert.equal(await store.findHost("nope"), undefined);
      await assert.rejects(store.getHost("nope"), corralError("host_not_found", 'Host "nope" is not registered'));

      const agentVm: AgentVm = {
        id: "e-1",
        env_id: "e",
        hostgroup: "ttstack",
        image: "base",
        engine: "qemu",
        cpu: 1,
        mem: 512,
        disk: 2048,
        ports: [],
        port_map: {},
        deny_outgoing: false,
        state: "running",
        ip: "10.0.2.15",
        mac: "52:54:00:00:00:01",
        created_at: "2030-01-01T11:00:00.000Z",
        last_error: null,
      };
      const updated = await store.updateHost("h2", {
        state: "offline",
        failures: 3,
        lastError: "connect ECONNREFUSED",
        lastSeenAt: "2030-01-01T12:05:00.000Z",
        vms: [agentVm],
        info: info("h2", { cpu: 16, mem: 32768, disk: 1000 }),
        token: null,
      });
      assert.equal(updated.state, "offline");
      assert.equal(updated.failures, 3);
      assert.equal(updated.lastError, "connect ECONNREFUSED");
      assert.equal(updated.lastSeenAt, "2030-01-01T12:05:00.000Z");
      assert.deepEqual(updated.vms, [agentVm]);
      assert.equal(updated.info?.cpu_total, 16);
      assert.equal(updated.token, null);
      assert.equal(updated.uri, "http://h2.example:8080", "fields not in the patch are kept");
      assert.deepEqual(await store.getHost("h2"), updated);
      assert.deepEqual(await store.updateHost("h2", {}), updated);
      await assert.rejects(store.updateHost("nope", { failures: 1 }), corralError("host_not_found"));
    });

    test("hosts: disconnected is kept; a heartbeat's write (updateConnectedHost) leaves a disconnected host as it is", async () => {
      await store.insertHost(newHost("h1"));
      const disconnected = await store.updateHost("h1", { disconnected: true, state: "offline" });
      assert.deepEqual([disconnected.disconnected, disconnected.state], [true, "offline"]);
      // A heartbeat's answer arriving after the disconnect does not bring the host back.
      assert.equal(await store.updateConnectedHost("h1", { state: "online", failures: 0 }), false);
      assert.deepEqual(await store.getHost("h1"), disconnected);
      const connected = await store.updateHost("h1", { disconnected: false, state: "online" });
      assert.equal(await store.updateConnectedHost("h1", { failures: 2 }), true);
      assert.equal((await store.getHost("h1")).failures, 2);
      assert.equal(connected.disconnected, false);
      assert.equal(await store.updateConnectedHost("nope", { failures: 1 }), false);
    });

    test("hosts: a taken id or uri is a conflict", async () => {
      await store.insertHost(newHost("h1"));
      await store.insertHost(newHost("h2"));
      await assert.rejects(store.insertHost({ ...newHost("h1"), uri: "http://other:8080" }), corralError("conflict", 'Host "h1" is already registered'));
      await assert.rejects(
        store.insertHost({ ...newHost("h3"), uri: "http://h1.example:8080" }),
        corralError("conflict", 'Host "h1" is already registered at "http://h1.example:8080"'),
      );
      await assert.rejects(store.updateHost("h2", { uri: "http://h1.example:8080" }), corralError("conflict", 'Host "h1" is already registered at "http://h1.example:8080"'));
      assert.deepEqual(
        (await store.listHosts()).map((h) => h.uri),
        ["http://h1.example:8080", "http://h2.example:8080"],
      );
    });

    test("createEnv places the VMs, stores them pending and books their room on the hosts", async () => {
      await store.insertHost(newHost("big", { cpu: 32, mem: 65536, disk: 1_000_000 }));
      await store.insertHost(newHost("small", { cpu: 2, mem: 4096, disk: 50_000 }));
      const env = await store.createEnv(
        { id: "e1", owner: "ann", sshKeys: ["ssh-ed25519 AAAA ann"], lifetime: 3600 },
        [
          vmSpec("e1-1", { cpu: 4, mem: 2048, disk: 20480, ports: [8080], denyOutgoing: true }),
          vmSpec("e1-2", { cpu: 6, mem: 2048, disk: 20480 }),
          vmSpec("e1-3", { cpu: 1, mem: 1024, disk: 1024 }),
        ],
        place,
      );
      assert.deepEqual(
        { ...env, vms: undefined },
        {
          id: "e1",
          owner: "ann",
          sshKeys: ["ssh-ed25519 AAAA ann"],
          lifetime: 3600,
          state: "creating",
          createdAt: "2030-01-01T12:00:00.000Z",
          expiresAt: "2030-01-01T13:00:00.000Z",
          operation: null,
          vms: undefined,
        },
      );
      // small (8 vCPUs with overcommit, 4 GiB) takes the first, then has 4 vCPUs left: the second goes to big.
      assert.deepEqual(
        env.vms.map((vm) => [vm.id, vm.hostId, vm.state]),
        [
          ["e1-1", "small", "pending"],
          ["e1-2", "big", "pending"],
          ["e1-3", "small", "pending"],
        ],
      );
      assert.deepEqual(env.vms[0], {
        id: "e1-1",
        envId: "e1",
        hostId: "small",
        image: "base",
        engine: "qemu",
        cpu: 4,
        mem: 2048,
        disk: 20480,
        ports: [8080],
        denyOutgoing: true,
        sshKeys: [],
        portMap: {},
        state: "pending",
        ip: null,
        error: null,
        createdAt: "2030-01-01T12:00:00.000Z",
        updatedAt: "2030-01-01T12:00:00.000Z",
      });
      assert.deepEqual(await store.getEnv("e1"), env);
      assert.deepEqual((await store.getHost("small")).reserved, { cpu: 5, mem: 3072, disk: 21504 });
      assert.deepEqual((await store.getHost("big")).reserved, { cpu: 6, mem: 2048, disk: 20480 });
      assert.deepEqual(
        (await store.listVmsOnHost("small")).map((vm) => vm.id),
        ["e1-1", "e1-3"],
      );
    });

    test("createEnv: a taken id is 409, no room is 422 no_capacity, and neither stores anything", async () => {
      await store.insertHost(newHost("h1", { cpu: 2, mem: 4096, disk: 50_000 }));
      await store.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e1-1")], place);
      const before = { hosts: await store.listHosts(), envs: await store.listEnvs() };

      await assert.rejects(store.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("x-1")], place), corralError("conflict", 'Environment "e1" already exists'));
      await assert.rejects(
        store.createEnv({ id: "e2", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e2-1"), vmSpec("e1-1")], place),
        corralError("conflict", 'Cannot create environment "e2": VM id "e1-1" is taken'),
      );
      await assert.rejects(
        store.createEnv({ id: "e2", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e2-1"), vmSpec("e2-1")], place),
        corralError("invalid_request", 'Cannot create environment "e2": VM id "e2-1" is given twice'),
      );
      const specs = [vmSpec("e3-1", { mem: 1024 }), vmSpec("e3-2", { mem: 4096 })];
      const expected = placeVms(before.hosts, specs);
      assert.equal(expected.ok, false);
      await assert.rejects(store.createEnv({ id: "e3", owner: "", sshKeys: [], lifetime: 60 }, specs, place), (err: unknown) => {
        corralError("no_capacity", expected.ok ? "" : expected.reason)(err);
        assert.equal((err as CorralError).status, 422);
        return true;
      });
      assert.match(expected.ok ? "" : expected.reason, /^No host can take VM 2 \(cpu 2, mem 4096 MiB/);
      assert.deepEqual({ hosts: await store.listHosts(), envs: await store.listEnvs() }, before);
      assert.equal(await store.findVm("e3-1"), undefined);
    });

    test("createEnv calls made at once never book more room than a host has", async () => {
      // 5 threads: 20 vCPUs with overcommit, room for 10 VMs of 2.
      await store.insertHost(newHost("h1", { cpu: 5, mem: 1_000_000, disk: 10_000_000 }));
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) => store.createEnv({ id: `e${i}`, owner: "", sshKeys: [], lifetime: 60 }, [vmSpec(`e${i}-1`)], place)),
      );
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 10);
      assert.deepEqual((await store.getHost("h1")).reserved, { cpu: 20, mem: 10240, disk: 102400 });
    });

    test("creates placed together each keep their own outcome: a taken id, a taken VM id and no room fail alone", async () => {
      // 5 threads: 20 vCPUs with overcommit, room for 10 VMs of 2; e0 takes one, a, b and c four, f0-f4 the rest.
      await store.insertHost(newHost("h1", { cpu: 5, mem: 1_000_000, disk: 10_000_000 }));
      await store.createEnv({ id: "e0", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e0-1")], place);
      const seen: unknown[] = [];
      store.subscribe((event) => seen.push(event));
      const create = (id: string, vms: NewFleetVm[]) =>
        store.createEnv({ id, owner: "", sshKeys: [], lifetime: 60 }, vms, place, [{ type: "envs-changed", payload: { envId: id } }]);
      // Asked at once: the first is placed alone, the others wait for it and are placed together.
      const results = await Promise.allSettled([
        create("a", [vmSpec("a-1")]),
        create("b", [vmSpec("b-1")]),
        create("e0", [vmSpec("x-1")]),
        create("c", [vmSpec("c-1"), vmSpec("c-2")]),
        create("big", [vmSpec("big-1", { cpu: 40 })]),
        create("d", [vmSpec("d-1"), vmSpec("e0-1")]),
        ...Array.from({ length: 8 }, (_, i) => create(`f${i}`, [vmSpec(`f${i}-1`)])),
      ]);
      const outcome = (r: PromiseSettledResult<unknown>) => (r.status === "fulfilled" ? "ok" : (r.reason as CorralError).code);
      assert.deepEqual(results.map(outcome), ["ok", "ok", "conflict", "ok", "no_capacity", "conflict", "ok", "ok", "ok", "ok", "ok", "no_capacity", "no_capacity", "no_capacity"]);
      assert.match((results[2] as PromiseRejectedResult).reason.message, /^Environment "e0" already exists$/);
      assert.match((results[5] as PromiseRejectedResult).reason.message, /VM id "e0-1" is taken/);
      assert.deepEqual((await store.getHost("h1")).reserved, { cpu: 20, mem: 10240, disk: 102400 });
      const stored = (await store.listEnvs()).map((env) => [env.id, env.vms.map((vm) => vm.id)]);
      assert.deepEqual(stored.sort(), [["a", ["a-1"]], ["b", ["b-1"]], ["c", ["c-1", "c-2"]], ["e0", ["e0-1"]], ...[0, 1, 2, 3, 4].map((i) => [`f${i}`, [`f${i}-1`]])].sort());
      await until(() => (seen.length >= 8 ? true : undefined), "the announcements");
      await new Promise((r) => setTimeout(r, 200));
      const told = seen.map((event) => (event as { payload: { envId: string } }).payload.envId);
      assert.deepEqual(told.sort(), ["a", "b", "c", "f0", "f1", "f2", "f3", "f4"], "only the stored creates are announced");
    });

    test("VMs: update, delete gives the room back, an env is deleted once it has no VMs", async () => {
      await store.insertHost(newHost("h1"));
      await store.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e1-1"), vmSpec("e1-2", { cpu: 1, mem: 512, disk: 2048 })], place);
      assert.deepEqual((await store.getHost("h1")).reserved, { cpu: 3, mem: 1536, disk: 12288 });

      clock += 5000;
      const vm = await store.updateVm("e1-1", { state: "running", ip: "10.0.2.15", portMap: { "22": 40022, "80": 40080 } });
      assert.deepEqual([vm.state, vm.ip, vm.portMap, vm.error, vm.updatedAt], ["running", "10.0.2.15", { "22": 40022, "80": 40080 }, null, "2030-01-01T12:00:05.000Z"]);
      assert.deepEqual(await store.getVm("e1-1"), vm);
      const failed = await store.updateVm("e1-2", { state: "error", error: "Host said no", updatedAt: "2030-01-02T00:00:00.000Z" });
      assert.deepEqual([failed.state, failed.error, failed.updatedAt, failed.ip], ["error", "Host said no", "2030-01-02T00:00:00.000Z", null]);
      await assert.rejects(store.updateVm("nope", { state: "lost" }), corralError("vm_not_found", 'VM "nope" does not exist'));
      await assert.rejects(store.getVm("nope"), corralError("vm_not_found"));
      assert.equal(await store.findVm("nope"), undefined);

      await store.setEnvState("e1", "partial");
      assert.equal((await store.getEnv("e1")).state, "partial");
      await assert.rejects(store.setEnvState("nope", "running"), corralError("env_not_found", 'Environment "nope" does not exist'));

      await assert.rejects(store.deleteHost("h1"), corralError("conflict", `Cannot remove host "h1": it still holds 2 VMs of the controller's environments; delete those first`));
      await assert.rejects(store.deleteEnv("e1"), corralError("conflict", 'Cannot delete environment "e1": 2 VMs of it remain; delete them first'));

      assert.equal(await store.deleteVm("e1-1"), true);
      assert.equal(await store.deleteVm("e1-1"), false);
      assert.deepEqual((await store.getHost("h1")).reserved, { cpu: 1, mem: 512, disk: 2048 });
      assert.deepEqual(
        (await store.getEnv("e1")).vms.map((v) => v.id),
        ["e1-2"],
      );
      await assert.rejects(store.deleteHost("h1"), corralError("conflict", /still holds 1 VM of/));
      await assert.rejects(store.deleteEnv("e1"), corralError("conflict", 'Cannot delete environment "e1": 1 VM of it remains; delete it first'));

      assert.equal(await store.deleteVm("e1-2"), true);
      assert.deepEqual((await store.getHost("h1")).reserved, { cpu: 0, mem: 0, disk: 0 });
      assert.equal(await store.deleteEnv("e1"), true);
      assert.equal(await store.deleteEnv("e1"), false);
      await assert.rejects(store.getEnv("e1"), corralError("env_not_found"));
      await store.deleteHost("h1");
      await assert.rejects(store.deleteHost("h1"), corralError("host_not_found"));
      assert.deepEqual(await store.listHosts(), []);
    });

    test("updateVmIfUnchanged writes only over the version it was given", async () => {
      await store.insertHost(newHost("h1"));
      await store.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e1-1")], place);
      const seen = await store.getVm("e1-1");
      clock += 1000;
      const newer = await store.updateVm("e1-1", { state: "booting" });
      assert.equal(await store.updateVmIfUnchanged(seen, { state: "lost" }), false);
      assert.equal((await store.getVm("e1-1")).state, "booting");
      clock += 1000;
      assert.equal(await store.updateVmIfUnchanged(newer, { state: "running", ip: "10.0.2.15" }), true);
      assert.deepEqual([(await store.getVm("e1-1")).state, (await store.getVm("e1-1")).ip], ["running", "10.0.2.15"]);
      assert.equal(await store.updateVmIfUnchanged({ id: "nope", updatedAt: newer.updatedAt }, { state: "lost" }), false);
    });

    test("hostEndpoints gives the addresses of the asked hosts, or of all", async () => {
      await store.insertHost(newHost("h1", undefined, { token: "t1" }));
      await store.insertHost(newHost("h2", undefined, { kind: "ttstack" }));
      const all = await store.hostEndpoints();
      assert.deepEqual(
        [...all.values()].sort((a, b) => a.id.localeCompare(b.id)),
        [
          { id: "h1", addr: "h1.example:8080", uri: "http://h1.example:8080", token: "t1", kind: "corral", state: "online" },
          { id: "h2", addr: "h2.example:8080", uri: "http://h2.example:8080", token: null, kind: "ttstack", state: "online" },
        ],
      );
      assert.deepEqual([...(await store.hostEndpoints(["h2", "h2", "gone"])).keys()], ["h2"]);
      assert.equal((await store.hostEndpoints([])).size, 0);
    });

    test("listEnvs reads every env with its VMs, in order, in two queries", async () => {
      await store.insertHost(newHost("h1", { cpu: 64, mem: 1_000_000, disk: 10_000_000 }));
      for (let e = 1; e <= 5; e++) {
        clock += 1000;
        const vms = Array.from({ length: e === 3 ? 12 : 2 }, (_, i) => vmSpec(`env${e}-${i + 1}`, { cpu: 1 }));
        await store.createEnv({ id: `env${e}`, owner: "", sshKeys: [], lifetime: 60 }, vms, place);
      }
      let queries = 0;
      const counting = await open({ onQuery: () => queries++ });
      queries = 0;
      const envs = await counting.listEnvs();
      assert.equal(queries, 2);
      assert.deepEqual(
        envs.map((e) => [e.id, e.vms.length]),
        [
          ["env1", 2],
          ["env2", 2],
          ["env3", 12],
          ["env4", 2],
          ["env5", 2],
        ],
      );
      assert.deepEqual(
        envs[2]?.vms.map((vm) => vm.id),
        Array.from({ length: 12 }, (_, i) => `env3-${i + 1}`),
        "VMs in the order the request listed them (env3-10 after env3-9)",
      );
      assert.ok(envs.every((e) => e.vms.every((vm) => vm.envId === e.id)));
      assert.deepEqual(await store.listEnvs(), envs);
    });

    test("listEnvsPage: pages in listEnvs' order (ties by id), two queries each; a position survives its environment's delete", async () => {
      await store.insertHost(newHost("h1", { cpu: 64, mem: 1_000_000, disk: 10_000_000 }));
      assert.deepEqual(await store.listEnvsPage(3), { envs: [], next: undefined }, "an empty fleet: one empty page");
      // Three at one instant, then four at a later one: each group ordered by id.
      for (const [id, step] of [
        ["c", 0],
        ["a", 0],
        ["b", 0],
        ["g", 1000],
        ["d", 0],
        ["f", 0],
        ["e", 0],
      ] as const) {
        clock += step;
        await store.createEnv({ id, owner: "", sshKeys: [], lifetime: 60 }, [vmSpec(`${id}-1`, { cpu: 1 }), vmSpec(`${id}-2`, { cpu: 1 })], place);
      }
      const whole = await store.listEnvs();
      assert.deepEqual(
        whole.map((e) => e.id),
        ["a", "b", "c", "d", "e", "f", "g"],
      );
      let queries = 0;
      const counting = await open({ onQuery: () => queries++ });
      const pages: string[][] = [];
      let after: Parameters<FleetStore["listEnvsPage"]>[1];
      do {
        queries = 0;
        const page = await counting.listEnvsPage(3, after);
        assert.equal(queries, 2);
        assert.ok(page.envs.every((e) => e.vms.map((vm) => vm.id).join() === `${e.id}-1,${e.id}-2`));
        pages.push(page.envs.map((e) => e.id));
        after = page.next;
      } while (after !== undefined);
      assert.deepEqual(pages, [["a", "b", "c"], ["d", "e", "f"], ["g"]]);
      const exact = await store.listEnvsPage(7);
      assert.equal(exact.envs.length, 7);
      assert.equal(exact.next, undefined, "a page that ends with the last environment says no more follow");
      assert.deepEqual(exact.envs, whole);

      const first = await store.listEnvsPage(2);
      for (const vm of first.envs[1]?.vms ?? []) await store.deleteVm(vm.id);
      await store.deleteEnv("b");
      assert.deepEqual(
        (await store.listEnvsPage(2, first.next)).envs.map((e) => e.id),
        ["c", "d"],
      );
    });

    test("placement follows each host's latest report: its totals, images and engines; none before it reported", async () => {
      await store.insertHost(newHost("h1", { cpu: 1, mem: 4096, disk: 100_000 }, { info: null, state: "online" }));
      await assert.rejects(
        store.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e1-1", { cpu: 8 })], place),
        corralError("no_capacity", /has not reported its resources yet/),
      );
      await store.updateHost("h1", { info: info("h1", { cpu: 1, mem: 4096, disk: 100_000 }) });
      await assert.rejects(
        store.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e1-1", { cpu: 8 })], place),
        corralError("no_capacity", /lacks CPU \(at most 4 free\)/),
      );
      await store.updateHost("h1", { info: info("h1", { cpu: 2, mem: 4096, disk: 100_000 }, { images: ["debian"] }) });
      await assert.rejects(
        store.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e1-1", { cpu: 8 })], place),
        corralError("no_capacity", /lacks image "base"/),
      );
      await store.updateHost("h1", { info: info("h1", { cpu: 2, mem: 4096, disk: 100_000 }, { images: ["debian", "base"] }) });
      const env = await store.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e1-1", { cpu: 8 })], place);
      assert.equal(env.vms[0]?.hostId, "h1");
      await store.updateHost("h1", { info: null });
      await assert.rejects(
        store.createEnv({ id: "e2", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e2-1", { cpu: 1 })], place),
        corralError("no_capacity", /has not reported/),
      );
    });

    test("expired environments and environments by state", async () => {
      await store.insertHost(newHost("h1"));
      await store.createEnv({ id: "short", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("short-1")], place);
      await store.createEnv({ id: "long", owner: "", sshKeys: [], lifetime: 3600 }, [vmSpec("long-1")], place);
      await store.createEnv({ id: "gone", owner: "", sshKeys: [], lifetime: 10 }, [], place);
      await store.setEnvState("long", "deleting");
      const ids = (envs: { id: string }[]) => envs.map((e) => e.id).sort();
      assert.deepEqual(ids(await store.listExpiredEnvs(new Date(START + 9_999))), []);
      assert.deepEqual(ids(await store.listExpiredEnvs(new Date(START + 10_000))), ["gone"]);
      const expired = await store.listExpiredEnvs(new Date(START + 60_000));
      assert.deepEqual(ids(expired), ["gone", "short"]);
      assert.deepEqual(
        expired.find((e) => e.id === "short")?.vms.map((vm) => vm.id),
        ["short-1"],
      );
      assert.deepEqual(ids(await store.listExpiredEnvs(new Date(START + 10 * 3600_000))), ["gone", "long", "short"]);
      const deleting = await store.listEnvsInState("deleting");
      assert.deepEqual(
        deleting.map((e) => [e.id, e.vms.map((vm) => vm.id)]),
        [["long", ["long-1"]]],
      );
    });

    test("an environment's operation: held by its creator with a lease, renewed, finished only by its holder", async () => {
      await store.insertHost(newHost("h1"));
      const created = await store.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 3600, operationOwner: "ctl-a" }, [vmSpec("e1-1")], place);
      assert.deepEqual(created.operation, { owner: "ctl-a", until: "2030-01-01T12:00:15.000Z" });
      clock += 10_000;
      await store.renewEnvOperations("ctl-a", ["e1", "not-there"]);
      await store.renewEnvOperations("ctl-b", ["e1"]);
      assert.deepEqual((await store.getEnv("e1")).operation, { owner: "ctl-a", until: "2030-01-01T12:00:25.000Z" });

      assert.equal(await store.finishEnvOperation("e1", "ctl-b", "running"), false, "only the holder finishes it");
      assert.equal(await store.finishEnvOperation("e1", "ctl-a", "partial"), true);
      const finished = await store.getEnv("e1");
      assert.deepEqual([finished.state, finished.operation], ["partial", null]);
      assert.equal(await store.finishEnvOperation("e1", "ctl-a"), false, "letting go twice is harmless");

      // Between operations anyone may claim it; `from` and `to` make the claim a compare-and-set of the state.
      assert.equal(await store.claimEnvOperation("e1", "ctl-b", { from: ["running"], to: "stopping" }), undefined);
      const claimed = await store.claimEnvOperation("e1", "ctl-b", { from: ["partial", "running"], to: "stopping" });
      assert.deepEqual([claimed?.state, claimed?.operation], ["stopping", { owner: "ctl-b", until: "2030-01-01T12:00:25.000Z" }]);
      assert.deepEqual([claimed?.vms.map((vm) => vm.id)], [["e1-1"]]);
      assert.equal(await store.claimEnvOperation("nope", "ctl-b"), undefined);
      assert.equal(await store.finishEnvOperation("e1", "ctl-b"), true);
      assert.deepEqual([(await store.getEnv("e1")).state, (await store.getEnv("e1")).operation], ["stopping", null], "let go without a state: the state stays");
    });

    test("an environment's state moves only along the lifecycle: claims, finishes and sets; an illegal move is a 409 and writes nothing", async () => {
      for (const from of ENV_STATES) {
        for (const to of ENV_STATES) {
          const legal = canMoveEnv(from, to);
          const id = `${from}-${to}`;
          await store.createEnv({ id: `claim-${id}`, owner: "", sshKeys: [], lifetime: 3600, state: from }, [], place);
          const claimed = await store.claimEnvOperation(`claim-${id}`, "ctl-a", { to });
          assert.equal(claimed?.state, legal ? to : undefined, `claim ${from} -> ${to}`);
          if (!legal) assert.deepEqual([(await store.getEnv(`claim-${id}`)).state, (await store.getEnv(`claim-${id}`)).operation], [from, null]);

          await store.createEnv({ id: `finish-${id}`, owner: "", sshKeys: [], lifetime: 3600, state: from, operationOwner: "ctl-a" }, [], place);
          if (legal) assert.equal(await store.finishEnvOperation(`finish-${id}`, "ctl-a", to), true);
          else await assert.rejects(store.finishEnvOperation(`finish-${id}`, "ctl-a", to), corralError("conflict", `Cannot move environment "finish-${id}" from ${from} to ${to}`));
          const finished = await store.getEnv(`finish-${id}`);
          assert.deepEqual([finished.state, finished.operation?.owner ?? null], legal ? [to, null] : [from, "ctl-a"], `finish ${from} -> ${to}`);
          // Another controller's finish is not a verdict on the move: it did not hold the operation.
          if (!legal) assert.equal(await store.finishEnvOperation(`finish-${id}`, "ctl-b", to), false);

          await store.createEnv({ id: `set-${id}`, owner: "", sshKeys: [], lifetime: 3600, state: from }, [], place);
          if (legal) await store.setEnvState(`set-${id}`, to);
          else await assert.rejects(store.setEnvState(`set-${id}`, to), corralError("conflict"));
          assert.equal((await store.getEnv(`set-${id}`)).state, legal ? to : from, `set ${from} -> ${to}`);
        }
      }
    });

    test("stateCounts: hosts by kind and state (disconnected apart), environments and VMs by state", async () => {
      assert.deepEqual(await store.stateCounts(), { hosts: [], envs: [], vms: [] });
      await store.insertHost(newHost("h1"));
      await store.insertHost(newHost("h2"));
      await store.insertHost(newHost("t1", undefined, { kind: "ttstack", state: "offline" }));
      await store.insertHost(newHost("h3", undefined, { state: "offline" }));
      await store.updateHost("h3", { disconnected: true });
      await store.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 3600 }, [vmSpec("e1-1"), vmSpec("e1-2")], place);
      await store.createEnv({ id: "e2", owner: "", sshKeys: [], lifetime: 3600, state: "running" }, [vmSpec("e2-1")], place);
      await store.updateVm("e1-1", { state: "running" });
      await store.updateVm("e2-1", { state: "running" });
      const counts = await store.stateCounts();
      const sorted = <T>(rows: T[]): T[] => [...rows].sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
      assert.deepEqual(sorted(counts.hosts), [
        { kind: "corral", state: "disconnected", count: 1 },
        { kind: "corral", state: "online", count: 2 },
        { kind: "ttstack", state: "offline", count: 1 },
      ]);
      assert.deepEqual(sorted(counts.envs), [
        { state: "creating", count: 1 },
        { state: "running", count: 1 },
      ]);
      assert.deepEqual(sorted(counts.vms), [
        { state: "pending", count: 1 },
        { state: "running", count: 2 },
      ]);
    });

    test("fleetStatus counts hosts, envs, VMs and sums capacity", async () => {
      const numbersIn = (value: object): number[] => Object.values(value).flatMap((v) => (typeof v === "number" ? [v] : numbersIn(v as object)));
      assert.deepEqual(numbersIn(await store.fleetStatus()), Array(17).fill(0));

      await store.insertHost(newHost("a", undefined, { info: info("a", { cpu: 8, mem: 16384, disk: 100_000 }, { cpu_used: 3, mem_used: 2048, disk_used: 5000 }) }));
      await store.insertHost(newHost("b", undefined, { info: info("b", { cpu: 4, mem: 8192, disk: 50_000 }, { cpu_used: 1, mem_used: 512, disk_used: 700 }) }));
      await store.insertHost(newHost("c", undefined, { info: info("c", { cpu: 64, mem: 262_144, disk: 1_000_000 }, { cpu_used: 9 }) }));
      await store.insertHost(newHost("d", undefined, { info: null }));
      // Best fit puts the small VMs on b; only c has room for the big one.
      await store.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e1-1"), vmSpec("e1-2"), vmSpec("e1-3")], place);
      await store.createEnv({ id: "e2", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e2-1", { cpu: 1, mem: 512, disk: 2048 })], place);
      const big = await store.createEnv({ id: "e3", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e3-1", { cpu: 40, mem: 4096, disk: 4096 })], place);
      assert.equal(big.vms[0]?.hostId, "c");
      // c goes offline: its VM's reservation still counts, its totals and use no longer do.
      await store.updateHost("c", { state: "offline" });
      await store.updateVm("e1-1", { state: "running" });
      await store.updateVm("e1-2", { state: "running" });
      await store.updateVm("e1-3", { state: "stopped" });
      assert.deepEqual(await store.fleetStatus(), {
        hosts: { total: 4, online: 3, offline: 1 },
        envs: 3,
        vms: { total: 5, running: 2, stopped: 1, other: 2 },
        cpu: { total: 12, reserved: 47, used: 4 },
        mem: { total: 24576, reserved: 7680, used: 2560 },
        disk: { total: 150_000, reserved: 36864, used: 5700 },
      });
    });

    test("events reach subscribers asynchronously; big events are refused", async () => {
      const seen: unknown[] = [];
      const unsubscribe = store.subscribe((event) => seen.push(event));
      await store.publish({ type: "hosts-changed", payload: null });
      await store.publish({ type: "envs-changed", payload: { envId: "e1" } });
      await until(() => (seen.length === 2 ? true : undefined), "two events");
      assert.deepEqual(seen, [
        { type: "hosts-changed", payload: null },
        { type: "envs-changed", payload: { envId: "e1" } },
      ]);
      unsubscribe();
      await store.publish({ type: "hosts-changed", payload: null });
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(seen.length, 2);
      await assert.rejects(store.publish({ type: "big", payload: "x".repeat(8000) }), /Cannot publish an event of 8027 bytes: events must be at most 7999 bytes/);

      let calledDuringPublish = false;
      let publishing = true;
      store.subscribe(() => {
        calledDuringPublish ||= publishing;
      });
      const done = store.publish({ type: "hosts-changed", payload: null });
      publishing = false;
      await done;
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(calledDuringPublish, false);
    });

    test("several events go out in one statement, in order; a create's announcement only once it is stored", async () => {
      const seen: unknown[] = [];
      let queries = 0;
      const counting = await open({ onQuery: () => queries++ });
      counting.subscribe((event) => seen.push(event));
      queries = 0;
      const batch = [
        { type: "vms-changed", payload: { hostId: "h1" } },
        { type: "vms-changed", payload: { hostId: "h2" } },
        { type: "envs-changed", payload: { envId: "e1" } },
      ];
      await counting.publish(...batch);
      assert.ok(queries <= 1, `one statement at most, got ${queries}`);
      await until(() => (seen.length === 3 ? true : undefined), "three events");
      assert.deepEqual(seen, batch);
      await assert.rejects(counting.publish({ type: "small" }, { type: "big", payload: "x".repeat(8000) }), /Cannot publish an event of 8027 bytes/);

      seen.length = 0;
      await counting.insertHost(newHost("h1", { cpu: 2, mem: 4096, disk: 100_000 }));
      const announce = (envId: string) => [{ type: "envs-changed", payload: { envId } }];
      await counting.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e1-1")], place, announce("e1"));
      await assert.rejects(counting.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e1-2")], place, announce("e1 again")), corralError("conflict"));
      await assert.rejects(
        counting.createEnv({ id: "e2", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e2-1", { cpu: 64 })], place, announce("e2")),
        corralError("no_capacity"),
      );
      await until(() => (seen.length >= 1 ? true : undefined), "the announcement");
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(seen, announce("e1"), "the stored create's announcement only");
    });

    test("a host's kind and a VM's own SSH keys are kept; the fleet's id is made once", async () => {
      assert.equal((await store.insertHost(newHost("h1", undefined, { kind: "ttstack" }))).kind, "ttstack");
      assert.equal((await store.getHost("h1")).kind, "ttstack");
      assert.equal((await store.updateHost("h1", { kind: "corral" })).kind, "corral");
      await store.createEnv({ id: "e1", owner: "", sshKeys: ["env-key"], lifetime: 60 }, [vmSpec("e1-1", { sshKeys: ["vm-key"] }), vmSpec("e1-2")], place);
      assert.deepEqual(
        (await store.getEnv("e1")).vms.map((vm) => vm.sshKeys),
        [["vm-key"], []],
      );
      const fleet = await store.fleetId();
      assert.match(fleet, /^[0-9a-f-]{36}$/);
      assert.equal(await store.fleetId(), fleet);
    });

    test("the state survives closing and reopening (migrations run once)", async () => {
      await store.insertHost(newHost("h1"));
      await store.createEnv({ id: "e1", owner: "bob", sshKeys: ["k"], lifetime: 60 }, [vmSpec("e1-1")], place);
      const env = await store.getEnv("e1");
      const fleet = await store.fleetId();
      await store.close();
      const again = await open();
      assert.deepEqual(await again.getEnv("e1"), env);
      assert.deepEqual((await again.getHost("h1")).reserved, { cpu: 2, mem: 1024, disk: 10240 });
      assert.equal(await again.fleetId(), fleet, "the fleet keeps its id");
    });
  });
}

// ---- SQLite ----

const tempDirs: string[] = [];
after(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "corral-store-test-"));
  tempDirs.push(dir);
  return dir;
}

storeContract("SQLite", async () => ({ stateDir: await tempDir() }));

describe("operations on SQLite, where no other process shares the database", () => {
  test("an operation held by another controller is claimable at once: that controller is dead for sure", async () => {
    const dir = await tempDir();
    const store = await openFleetStore({ stateDir: dir, logger });
    try {
      await store.insertHost(newHost("h1"));
      await store.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 3600, operationOwner: "ctl-dead" }, [vmSpec("e1-1")], place);
      assert.deepEqual(
        (await store.listClaimableEnvs("ctl-new", ["creating"])).map((e) => e.id),
        ["e1"],
      );
      assert.equal((await store.claimEnvOperation("e1", "ctl-new", { from: ["creating"] }))?.operation?.owner, "ctl-new");
    } finally {
      await store.close();
    }
  });
});

describe("openFleetStore on SQLite", () => {
  test("keeps STATE_DIR/controller.db, readable by its owner only, in WAL mode; sqlite:PATH elsewhere", async () => {
    const stateDir = join(await tempDir(), "state");
    const store = await openFleetStore({ stateDir, logger });
    try {
      assert.equal(store.backend, "sqlite");
      assert.equal(store.location, join(stateDir, "controller.db"));
      assert.equal((await stat(store.location)).mode & 0o777, 0o600);
      assert.equal((await stat(`${store.location}-wal`)).mode & 0o777, 0o600);
      assert.equal(await store.tryAcquireLeadership(), true);
      assert.equal(await store.tryAcquireLeadership(), true);
    } finally {
      await store.close();
    }
    const file = join(await tempDir(), "elsewhere.db");
    const other = await openFleetStore({ url: `sqlite:${file}`, stateDir, logger });
    await other.close();
    assert.equal((await stat(file)).mode & 0o777, 0o600);
  });

  test("a database from before the capacity columns gets them from each host's report: placement works at once", async () => {
    const stateDir = await tempDir();
    const store = await openFleetStore({ stateDir, logger });
    await store.insertHost(newHost("h1", { cpu: 4, mem: 8192, disk: 100_000 }));
    await store.insertHost(newHost("h2", undefined, { info: null }));
    await store.close();
    // Back to the schema of migration 0004, as a controller of that version left it.
    const old = new Database(join(stateDir, "controller.db"));
    old.exec(
      `DROP INDEX envs_by_creation; DROP INDEX hosts_for_placement; ${["cpu_total", "mem_total", "disk_total", "engines", "images"].map((c) => `ALTER TABLE hosts DROP COLUMN ${c};`).join(" ")}`,
    );
    old.prepare("DELETE FROM kysely_migration WHERE name = ?").run("0005_host_capacity_env_order");
    old.close();

    const again = await openFleetStore({ stateDir, logger });
    try {
      const env = await again.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e1-1", { cpu: 16 })], place);
      assert.equal(env.vms[0]?.hostId, "h1", "h1's 4 vCPUs (16 with overcommit) were read from its stored report");
      assert.deepEqual(
        (await again.listEnvsPage(1)).envs.map((e) => e.id),
        ["e1"],
      );
      await assert.rejects(
        again.createEnv({ id: "e2", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e2-1", { cpu: 1 })], place),
        corralError("no_capacity", /1 online host lacks CPU.*1 online host has not reported/),
      );
    } finally {
      await again.close();
    }
  });

  test("placement sees what another connection wrote to a host, and room its own deletes gave back", async () => {
    const stateDir = await tempDir();
    const store = await openFleetStore({ stateDir, logger });
    try {
      await store.insertHost(newHost("h1", { cpu: 1, mem: 4096, disk: 100_000 }));
      await store.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e1-1", { cpu: 2 })], place);
      // Another process (say, an older controller still running) takes h1 offline behind this store's back.
      const other = new Database(join(stateDir, "controller.db"));
      other.prepare("UPDATE hosts SET state = 'offline' WHERE id = 'h1'").run();
      await assert.rejects(
        store.createEnv({ id: "e2", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e2-1", { cpu: 2 })], place),
        corralError("no_capacity", /1 host is offline/),
      );
      other.prepare("UPDATE hosts SET state = 'online' WHERE id = 'h1'").run();
      other.close();
      // h1 has 4 vCPUs with overcommit, 2 of them reserved: a VM of 3 fits only once e1's VM is gone.
      await assert.rejects(
        store.createEnv({ id: "e2", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e2-1", { cpu: 3 })], place),
        corralError("no_capacity", /lacks CPU \(at most 2 free\)/),
      );
      await store.deleteVm("e1-1");
      const e2 = await store.createEnv({ id: "e2", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e2-1", { cpu: 3 })], place);
      assert.equal(e2.vms[0]?.hostId, "h1");
      await store.deleteVm("e2-1");
      await store.deleteEnv("e2");
      await store.deleteEnv("e1");
      await store.deleteHost("h1");
      await assert.rejects(
        store.createEnv({ id: "e3", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e3-1", { cpu: 1 })], place),
        corralError("no_capacity", /no hosts are registered/),
      );
    } finally {
      await store.close();
    }
  });

  test("parseStoreUrl accepts sqlite:PATH, postgres:// and postgresql://, and names them when given anything else", () => {
    assert.deepEqual(parseStoreUrl(undefined, "/var/lib/corral"), { backend: "sqlite", file: "/var/lib/corral/controller.db" });
    assert.deepEqual(parseStoreUrl("sqlite:/data/fleet.db", "/s"), { backend: "sqlite", file: "/data/fleet.db" });
    assert.deepEqual(parseStoreUrl("postgres://u@db:5432/fleet", "/s"), { backend: "postgres", url: "postgres://u@db:5432/fleet" });
    assert.deepEqual(parseStoreUrl("postgresql://u@db/fleet", "/s"), { backend: "postgres", url: "postgresql://u@db/fleet" });
    for (const bad of ["mysql://u@db/fleet", "sqlite:", "postgres:/db", "/tmp/x.db"]) {
      assert.throws(
        () => parseStoreUrl(bad, "/s"),
        corralError("invalid_request", /give sqlite:PATH, postgres:\/\/USER@HOST:PORT\/DB \(or postgresql:\/\/…\), or nothing for \/s\/controller\.db$/),
      );
    }
    assert.throws(
      () => parseStoreUrl("postgress://u:hunter2@db/fleet", "/s"),
      corralError("invalid_request", /^Cannot open the controller database "postgress:\/\/u:\*\*\*@db\/fleet"/),
    );
  });
});

// ---- PostgreSQL ----

describe("PostgreSQL", { timeout: 120_000 }, () => {
  before(async () => {
    await sharedPostgres();
  });
  after(async () => {
    await stopSharedPostgres();
  });

  storeContract("PostgreSQL", async () => ({ url: await freshPostgresDatabase(), stateDir: await tempDir() }));

  describe("controllers sharing one PostgreSQL", { timeout: 60_000 }, () => {
    let url: string;
    const opened: FleetStore[] = [];
    const open = async (options: Partial<FleetStoreOptions> = {}): Promise<FleetStore> => {
      const s = await openFleetStore({ url, stateDir: "/nonexistent", logger, ...options });
      opened.push(s);
      return s;
    };

    beforeEach(async () => {
      url = await freshPostgresDatabase();
    });
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
    });

    test("two stores placing 20 environments at once on a host with room for 10 book exactly 10", async () => {
      // Both open (and migrate) the new database at the same time.
      const [a, b] = await Promise.all([open(), open()]);
      assert.equal(a.backend, "postgres");
      assert.equal(a.location.startsWith("postgres://postgres@127.0.0.1:"), true);
      // 5 threads: 20 vCPUs with overcommit; each VM takes 2.
      await a.insertHost(newHost("h1", { cpu: 5, mem: 1_000_000, disk: 10_000_000 }));
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? a : b).createEnv({ id: `e${i}`, owner: "", sshKeys: [], lifetime: 60 }, [vmSpec(`e${i}-1`)], place)),
      );
      const created = results.filter((r) => r.status === "fulfilled").length;
      const refused = results.filter((r) => r.status === "rejected");
      assert.equal(created, 10);
      assert.equal(refused.length, 10);
      for (const r of refused) corralError("no_capacity", /lacks CPU \(at most 0 free\)/)((r as PromiseRejectedResult).reason);
      assert.deepEqual((await b.getHost("h1")).reserved, { cpu: 20, mem: 10240, disk: 102400 });
      assert.equal((await a.listEnvs()).length, 10);
      assert.equal((await b.fleetStatus()).vms.total, 10);
    });

    test("three stores with warm copies placing 90 environments at once on 4 hosts with room for 40: exactly 40, none over", async () => {
      const stores = await Promise.all([open(), open(), open()]);
      // Each host: 5 threads, 20 vCPUs with overcommit, 10 VMs of 2.
      for (const id of ["h1", "h2", "h3", "h4"]) await stores[0]!.insertHost(newHost(id, { cpu: 5, mem: 1_000_000, disk: 10_000_000 }));
      // One placement each first, so that every store places the rest on its copy (lock and read in one statement).
      for (const [i, store] of stores.entries()) await store.createEnv({ id: `warm${i}`, owner: "", sshKeys: [], lifetime: 60 }, [vmSpec(`warm${i}-1`)], place);
      const results = await Promise.allSettled(
        Array.from({ length: 90 }, (_, i) => stores[i % 3]!.createEnv({ id: `e${i}`, owner: "", sshKeys: [], lifetime: 60 }, [vmSpec(`e${i}-1`)], place)),
      );
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 37, "40 VMs of room, 3 taken by the warm-up");
      for (const r of results) if (r.status === "rejected") corralError("no_capacity")(r.reason);
      for (const id of ["h1", "h2", "h3", "h4"]) {
        const host = await stores[1]!.getHost(id);
        assert.equal(host.reserved.cpu, 20, `${id} is full, not over`);
        assert.equal((await stores[2]!.listVmsOnHost(id)).length, 10);
      }
    });

    test("a placement made on what another controller changed since is checked under the lock: never booked twice", async () => {
      const [a, b] = await Promise.all([open(), open()]);
      // h1: 8 vCPUs with overcommit, hx: 4. Best fit puts a's two VMs of 2 on hx; a reads h1 once, at its first placement.
      await a.insertHost(newHost("h1", { cpu: 2, mem: 1_000_000, disk: 10_000_000 }));
      await a.insertHost(newHost("hx", { cpu: 1, mem: 1_000_000, disk: 10_000_000 }));
      for (const id of ["e1", "e2"]) assert.equal((await a.createEnv({ id, owner: "", sshKeys: [], lifetime: 60 }, [vmSpec(`${id}-1`)], place)).vms[0]?.hostId, "hx");
      // b books all of h1: a's copy still shows it empty.
      await b.createEnv({ id: "b1", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("b1-1", { cpu: 8 })], place);
      await assert.rejects(
        a.createEnv({ id: "e3", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e3-1")], place),
        corralError("no_capacity", /2 online hosts lack CPU \(at most 0 free\)/),
      );
      assert.deepEqual((await a.getHost("h1")).reserved.cpu, 8);
      // b registers h2: a, its copy now fresh but without h2, finds it when nothing else fits.
      await b.insertHost(newHost("h2", { cpu: 1, mem: 1_000_000, disk: 10_000_000 }));
      assert.equal((await a.createEnv({ id: "e3", owner: "", sshKeys: [], lifetime: 60 }, [vmSpec("e3-1")], place)).vms[0]?.hostId, "h2");
    });

    test("an environment's operation held by another controller is claimed once its lease ran out, by one claimant only", async () => {
      let clock = START;
      const now = () => new Date(clock);
      const [a, b, c] = await Promise.all([open({ now }), open({ now }), open({ now })]);
      await a.insertHost(newHost("h1"));
      await a.createEnv({ id: "e1", owner: "", sshKeys: [], lifetime: 3600, operationOwner: "ctl-a" }, [vmSpec("e1-1")], place);
      assert.deepEqual(await b.listClaimableEnvs("ctl-b", ["creating"]), []);
      assert.equal(await b.claimEnvOperation("e1", "ctl-b", { from: ["creating"] }), undefined, "ctl-a's lease holds");
      clock += 15_000;
      assert.equal(await b.claimEnvOperation("e1", "ctl-b", { from: ["creating"] }), undefined, "to the last millisecond");
      clock += 1;
      assert.deepEqual(
        (await b.listClaimableEnvs("ctl-b", ["creating", "deleting"])).map((e) => [e.id, e.operation?.owner]),
        [["e1", "ctl-a"]],
      );
      const claims = await Promise.all([b.claimEnvOperation("e1", "ctl-b", { from: ["creating"] }), c.claimEnvOperation("e1", "ctl-c", { from: ["creating"] })]);
      assert.equal(claims.filter((env) => env !== undefined).length, 1, "one claimant wins");
      assert.equal(await a.finishEnvOperation("e1", "ctl-a", "running"), false, "the old holder's late outcome does not land");
      assert.equal((await a.getEnv("e1")).state, "creating");
    });

    test("an event published by one store reaches the subscribers of both", async () => {
      const [a, b] = await Promise.all([open(), open()]);
      const seenA: unknown[] = [];
      const seenB: unknown[] = [];
      a.subscribe((e) => seenA.push(e));
      b.subscribe((e) => seenB.push(e));
      await b.publish({ type: "vms-changed", payload: { hostId: "h1" } });
      await a.publish({ type: "envs-changed", payload: { envId: "e1" } });
      await until(() => (seenA.length === 2 && seenB.length === 2 ? true : undefined), "both stores to hear both events", 5000, 20);
      const expected = [
        { type: "vms-changed", payload: { hostId: "h1" } },
        { type: "envs-changed", payload: { envId: "e1" } },
      ];
      assert.deepEqual(seenA, expected);
      assert.deepEqual(seenB, expected);
    });

    test("one store leads; when it closes, another takes over", async () => {
      const [a, b] = await Promise.all([open(), open()]);
      assert.equal(await a.tryAcquireLeadership(), true);
      assert.equal(await a.tryAcquireLeadership(), true, "idempotent while held");
      assert.equal(await b.tryAcquireLeadership(), false);
      assert.equal(await b.tryAcquireLeadership(), false);
      await a.close();
      await until(async () => ((await b.tryAcquireLeadership()) ? true : undefined), "the other store to lead", 5000, 50);
      const c = await open();
      assert.equal(await c.tryAcquireLeadership(), false);
    });

    test("when the leader's process dies, a follower takes over", async () => {
      const index = fileURLToPath(new URL("../../src/controller/db/index.ts", import.meta.url));
      const script = `
        const { openFleetStore } = await import(${JSON.stringify(index)});
        const store = await openFleetStore({ url: process.env.STORE_URL, stateDir: "/nonexistent" });
        console.log("leader " + (await store.tryAcquireLeadership()));
        setInterval(() => {}, 1000);
      `;
      const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
        env: { ...process.env, STORE_URL: url },
        stdio: ["ignore", "pipe", "inherit"],
      });
      try {
        const line = await new Promise<string>((resolve, reject) => {
          let out = "";
          child.stdout.on("data", (chunk: Buffer) => {
            out += chunk.toString();
            if (out.includes("\n")) resolve(out.trim());
          });
          child.once("exit", (code) => reject(new Error(`The leader process exited (${code}) before it said anything`)));
        });
        assert.equal(line, "leader true");
        const follower = await open();
        assert.equal(await follower.tryAcquireLeadership(), false);
        child.kill("SIGKILL");
        await until(async () => ((await follower.tryAcquireLeadership()) ? true : undefined), "the follower to lead", 10_000, 200);
      } finally {
        child.kill("SIGKILL");
      }
    });
  });
});
