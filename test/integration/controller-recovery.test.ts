// A controller killed (as kill -9 would, at named crash points) in the middle of an environment's create,
// stop or delete, over two real daemons: restarted on the same SQLite database it finishes what was
// interrupted, and every VM's state, host and port map are what its host reports, with no VM left on a host
// that the controller does not know of and nothing created twice. Then two controllers on one PostgreSQL:
// the one doing a create dies, and the other (once the dead one's lease on the create ran out) finishes it;
// meanwhile its heartbeat adopts a `pending` VM that its host already runs.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import type { EnvDetail, EnvState, FleetStatus, FleetVm, Host, WsServerMessage } from "../../src/protocol/controller.ts";
import type { AgentVm } from "../../src/protocol/ttstack-agent.ts";
import { TestController } from "../helpers/controller-process.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";
import { startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { until } from "../helpers/until.ts";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbIJ6GrqGRdTcUZw8mTcVYf2QfrKX8Zrj9ZUuAY+u0p corral-test";
/** CPU overcommit 1 on these 2-core hosts: one 2-vCPU VM per host, so an environment of two spans both. */
const ARGS = ["--overcommit", "cpu=1"];
const VM = { image: "base", cpu: 2, mem: 512, disk: 4096 };
const twoVms = (id: string) => ({ id, ssh_keys: [KEY], vms: [{ ...VM, ports: [8080] }, VM], lifetime: 3600 });

/** A daemon's VMs (its agent API's data), each with the daemon's own state as `state`. */
const daemonVms = async (daemon: TestDaemon): Promise<AgentVm[]> =>
  ((await (await fetch(`${daemon.url}/api/vms`)).json()) as { data: AgentVm[] }).data.map((vm) => ({ ...vm, state: vm.status as AgentVm["state"] }));

/** An environment as these tests read it: Corral's own states (`status`) as `state`, its VMs inline. */
type Env = Omit<EnvDetail["env"], "state"> & { state: EnvState; vms: (Omit<FleetVm, "state"> & { state: string })[] };
const envOf = (detail: EnvDetail): Env => ({ ...detail.env, state: detail.env.status, vms: detail.vms.map((vm) => ({ ...vm, state: vm.status })) });
const getEnv = async (controller: TestController, id: string): Promise<Env> => envOf((await controller.call<EnvDetail>("GET", `/api/envs/${id}`)).body);

describe("a controller killed mid-operation recovers when it restarts", { timeout: 1_200_000 }, () => {
  let a: TestDaemon;
  let b: TestDaemon;
  let controller: TestController;
  const hostOf = new Map<string, TestDaemon>();

  const env = (id: string): Promise<Env> => getEnv(controller, id);

  /** Restarts the controller armed to die at `point`, makes `request` (which it dies in), then starts it again unarmed. */
  const crashAt = async (point: string, request: () => Promise<unknown>): Promise<void> => {
    await controller.stop();
    await controller.start(ARGS, { CORRAL_CRASH_AT: point });
    const answer = await request().then(
      (value) => ({ answered: value }),
      () => undefined,
    );
    assert.equal(answer, undefined, `the controller should have died at ${point} instead of answering`);
    assert.equal(await controller.exited(10_000), "SIGKILL", `the controller should have died at ${point}`);
    await controller.start(ARGS);
  };

  /**
   * Waits until the environment is `state` with every VM in `vmState` on its host as well, then checks that
   * each VM's host, port map and address are the host's, and that the hosts have no VM the controller lacks.
   */
  const settled = async (id: string, state: Env["state"], vmState: string): Promise<Env> => {
    const seen = await until(
      async () => {
        const current = await env(id);
        if (current.state !== state || !current.vms.every((vm) => vm.state === vmState)) return undefined;
        const onHosts = await Promise.all(current.vms.map(async (vm) => (await daemonVms(hostOf.get(vm.host_id) as TestDaemon)).find((v) => v.id === vm.id)));
        return onHosts.every((v) => v?.state === vmState) ? current : undefined;
      },
      `environment ${id} to be ${state} with its VMs ${vmState}`,
      240_000,
      250,
    );
    for (const vm of seen.vms) {
      const there = (await daemonVms(hostOf.get(vm.host_id) as TestDaemon)).find((v) => v.id === vm.id) as AgentVm;
      assert.equal(there.env_id, id, `${vm.id} on its host belongs to ${id}`);
      assert.deepEqual(vm.port_map, there.port_map, `${vm.id}'s port map is its host's`);
      assert.equal(vm.ip, there.ip);
      assert.equal(vm.error, null, `${vm.id}: ${vm.error}`);
    }
    await assertNoStrayVms();
    return seen;
  };

  /** Every VM on either host is one the controller knows, on that host; none is there twice. */
  const assertNoStrayVms = async (): Promise<void> => {
    const envs = (await controller.call<{ id: string }[]>("GET", "/api/envs")).body;
    const known = new Map((await Promise.all(envs.map((e) => env(e.id)))).flatMap((e) => e.vms.map((vm) => [vm.id, vm.host_id] as const)));
    for (const [hostId, daemon] of hostOf) {
      const ids = (await daemonVms(daemon)).map((vm) => vm.id);
      assert.equal(new Set(ids).size, ids.length, `no VM twice on ${hostId}: ${ids.join(", ")}`);
      for (const vmId of ids) assert.equal(known.get(vmId), hostId, `VM ${vmId} on host ${hostId} is known to the controller there`);
    }
  };

  const deleteAll = async (id: string): Promise<void> => {
    assert.equal((await controller.call("DELETE", `/api/envs/${id}`)).status, 200);
    for (const daemon of [a, b])
      assert.deepEqual(
        (await daemonVms(daemon)).map((vm) => vm.id),
        [],
      );
    const status = (await controller.call<FleetStatus>("GET", "/api/status")).body;
    assert.deepEqual([status.total_envs, status.total_vms, status.cpu_reserved], [0, 0, 0]);
  };

  before(async () => {
    a = await TestDaemon.create();
    b = await TestDaemon.create();
    await Promise.all([a.start(), b.start()]);
    controller = await TestController.create();
    await controller.start(ARGS);
    for (const [id, daemon] of [
      ["host-a", a],
      ["host-b", b],
    ] as const) {
      const added = await controller.call<Host>("POST", "/api/hosts", { id, uri: daemon.url });
      assert.equal(added.status, 201, JSON.stringify(added.body));
      hostOf.set(id, daemon);
    }
  });

  after(async () => {
    await controller?.dispose();
    await Promise.all([a?.dispose(), b?.dispose()]);
  });

  test("killed after the placement was stored, before any host was asked: the restart creates both VMs", async () => {
    await crashAt("env-create.placed", () => controller.call("POST", "/api/envs", twoVms("placed")));
    const done = await settled("placed", "running", "running");
    assert.deepEqual(done.vms.map((vm) => vm.host_id).sort(), ["host-a", "host-b"]);
    assert.ok(done.vms[0]?.port_map["8080"] && done.vms[0]?.port_map["22"], JSON.stringify(done.vms));
    assert.match(controller.log, /Recovered environment/);
    await deleteAll("placed");
  });

  test("killed after one VM was made on its host but not yet the other: the restart finishes the environment", async () => {
    await crashAt("env-create.vm-created", () => controller.call("POST", "/api/envs", twoVms("half")));
    await settled("half", "running", "running");
    await deleteAll("half");
  });

  test("killed after both VMs were made, before the environment was marked running; then mid-stop and mid-delete", async () => {
    await crashAt("env-create.all-created", () => controller.call("POST", "/api/envs", twoVms("whole")));
    const created = await settled("whole", "running", "running");

    await crashAt("env-power.vm-done", () => controller.call("POST", "/api/envs/whole/stop"));
    const stopped = await settled("whole", "stopped", "stopped");
    assert.deepEqual(
      stopped.vms.map((vm) => vm.port_map),
      created.vms.map((vm) => vm.port_map),
      "the ports stay",
    );

    const started = await controller.call("POST", "/api/envs/whole/start");
    assert.equal(started.status, 200, JSON.stringify(started.body));
    await settled("whole", "running", "running");

    await crashAt("env-delete.host-deleted", () => controller.call("DELETE", "/api/envs/whole"));
    await until(async () => ((await controller.call("GET", "/api/envs/whole")).status === 404 ? true : undefined), "the deletion to finish", 60_000, 250);
    for (const daemon of [a, b])
      assert.deepEqual(
        (await daemonVms(daemon)).map((vm) => vm.id),
        [],
      );
    const status = (await controller.call<FleetStatus>("GET", "/api/status")).body;
    assert.deepEqual([status.total_envs, status.total_vms, status.cpu_reserved, status.mem_reserved], [0, 0, 0, 0]);
  });

  test("a host that already has a VM of the name: a 409 adopts it when it is this VM, and a stranger is neither adopted nor deleted", async () => {
    // Heartbeats off after the first round: they would delete the VMs made below for an environment the
    // controller does not have yet, as orphans, before the create meets them.
    await controller.stop();
    const restarted = Math.floor(Date.now() / 1000);
    await controller.start([...ARGS, "--heartbeat", "1h"]);
    await until(
      async () => ((await controller.call<Host[]>("GET", "/api/hosts")).body.every((h) => (h.last_seen_at ?? 0) >= restarted) ? true : undefined),
      "the first heartbeat round",
    );
    const make = async (daemon: TestDaemon, body: object): Promise<AgentVm> => {
      const answer = await fetch(`${daemon.url}/api/vms`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ image: "base", ssh_keys: [KEY], ...body }),
      });
      const created = (await answer.json()) as { data: { vm: AgentVm } };
      assert.equal(answer.status, 201, JSON.stringify(created));
      return created.data.vm;
    };
    // On both hosts, since placement picks one: "dup-1" as the controller would make it (a create whose answer
    // was lost), "dup-2" another environment's.
    const premade = new Map<string, AgentVm>();
    for (const daemon of [a, b]) {
      premade.set(daemon.url, await make(daemon, { vm_id: "dup-1", env_id: "dup", cpu: 2, mem: 512, disk: 4096, ports: [8080] }));
      await make(daemon, { vm_id: "dup-2", env_id: "intruder", cpu: 1, mem: 256, disk: 4096 });
    }
    try {
      const answer = await controller.call<EnvDetail>("POST", "/api/envs", twoVms("dup"));
      assert.equal(answer.status, 201, JSON.stringify(answer.body));
      const created = { body: envOf(answer.body) };
      const [first, second] = created.body.vms;
      assert.equal(created.body.state, "partial", JSON.stringify(created.body));
      assert.match(answer.body.warnings?.join("\n") ?? "", /VM dup-2 on host .*: Host .* already has a VM named "dup-2"/, "TTstack's warnings name each VM that failed");
      const firstHost = hostOf.get(first?.host_id ?? "") as TestDaemon;
      const there = (await daemonVms(firstHost)).find((vm) => vm.id === "dup-1") as AgentVm;
      assert.equal(there.created_at, premade.get(firstHost.url)?.created_at, "dup-1 was adopted, not made again");
      assert.deepEqual([first?.state === "error", first?.port_map], [false, there.port_map]);
      assert.equal(second?.state, "error");
      assert.match(second?.error ?? "", /already has a VM named "dup-2" that is not this one: it belongs to environment "intruder"/);

      assert.equal((await controller.call("DELETE", "/api/envs/dup")).status, 200);
      const left = await daemonVms(hostOf.get(second?.host_id ?? "") as TestDaemon);
      assert.equal(left.find((vm) => vm.id === "dup-2")?.env_id, "intruder", "the other environment's VM is left alone");
      assert.equal(
        (await daemonVms(firstHost)).find((vm) => vm.id === "dup-1"),
        undefined,
        "the adopted VM went with its environment",
      );
    } finally {
      for (const daemon of [a, b]) for (const vm of await daemonVms(daemon)) await fetch(`${daemon.url}/api/vms/${vm.id}`, { method: "DELETE" });
      await controller.stop();
      await controller.start(ARGS);
    }
  });
});

describe("two controllers on one PostgreSQL: the one creating dies, the other finishes", { timeout: 600_000 }, () => {
  let postgres: TestPostgres;
  let daemon: TestDaemon;
  let doomed: TestController;
  let survivor: TestController;

  before(async () => {
    postgres = await startPostgres();
    daemon = await TestDaemon.create();
    await daemon.start();
    doomed = await TestController.create();
    survivor = await TestController.create();
    await doomed.start(["--database", postgres.url], { CORRAL_CRASH_AT: "env-create.placed" });
    await survivor.start(["--database", postgres.url]);
  });

  after(async () => {
    await doomed?.dispose();
    await survivor?.dispose();
    await daemon?.dispose();
    await postgres?.stop();
  });

  test("the survivor's heartbeat adopts the VM the host made; once the lease runs out it creates the other and the environment runs", async () => {
    const added = await survivor.call<Host>("POST", "/api/hosts", { id: "solo", uri: daemon.url });
    assert.equal(added.status, 201, JSON.stringify(added.body));
    const socket = new WebSocket(`${survivor.url.replace("http", "ws")}/ws?token=${survivor.apiKey}`);
    const messages: WsServerMessage[] = [];
    socket.on("message", (data) => messages.push(JSON.parse(data.toString()) as WsServerMessage));
    await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));
    try {
      const spec = { image: "base", cpu: 1, mem: 512, disk: 4096 };
      await doomed.call("POST", "/api/envs", { id: "pg", ssh_keys: [KEY], vms: [{ ...spec, ports: [8080] }, spec], lifetime: 3600 }).catch(() => undefined);
      assert.equal(await doomed.exited(), "SIGKILL", doomed.log);
      const stuck = await getEnv(survivor, "pg");
      assert.deepEqual([stuck.state, ...stuck.vms.map((vm) => vm.state)], ["creating", "pending", "pending"]);
      const sinceCrash = messages.length;

      // The dead controller's request for pg-1 reaches the host late: the host makes it.
      const late = await fetch(`${daemon.url}/api/vms`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ vm_id: "pg-1", env_id: "pg", ...spec, ports: [8080], ssh_keys: [KEY] }),
      });
      const lateAnswer = (await late.json()) as { data: { vm: AgentVm } };
      assert.equal(late.status, 201, JSON.stringify(lateAnswer));
      const made = lateAnswer.data.vm;

      // Heartbeats update a pending VM the host reports, while the create is still the dead controller's.
      const adopted = await until(
        async () => {
          const current = await getEnv(survivor, "pg");
          return current.vms[0]?.state !== "pending" ? current : undefined;
        },
        "the heartbeat to adopt pg-1",
        60_000,
        100,
      );
      assert.equal(adopted.state, "creating", "the create's lease has not run out yet");
      assert.equal(adopted.vms[1]?.state, "pending");
      assert.deepEqual(adopted.vms[0]?.port_map, made.port_map);

      const done = await until(
        async () => {
          const current = await getEnv(survivor, "pg");
          return current.state === "running" && current.vms.every((vm) => vm.state === "running") ? current : undefined;
        },
        "the survivor to finish the environment",
        240_000,
        250,
      );
      const onHost = await daemonVms(daemon);
      assert.deepEqual(onHost.map((vm) => vm.id).sort(), ["pg-1", "pg-2"]);
      assert.equal(onHost.find((vm) => vm.id === "pg-1")?.created_at, made.created_at, "pg-1 was adopted, not made again");
      for (const vm of done.vms) assert.deepEqual(vm.port_map, onHost.find((v) => v.id === vm.id)?.port_map);
      assert.ok(
        messages.slice(sinceCrash).some((m) => m.type === "envs-changed" && m.payload.envId === "pg"),
        "the dashboard heard of the recovery",
      );
      assert.match(survivor.log, /Recovered environment/);
      assert.equal((await survivor.call("DELETE", "/api/envs/pg")).status, 200);
      assert.deepEqual(await daemonVms(daemon), []);
    } finally {
      socket.close();
    }
  });
});
