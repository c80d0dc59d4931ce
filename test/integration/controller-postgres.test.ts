// Two controller processes sharing one real PostgreSQL (started by the test set-up) and one real daemon:
// what one changes, the other serves and tells its /ws clients (LISTEN/NOTIFY); exactly one leads (runs
// heartbeats and expiry), an expiry happens once, and when the leader dies the other takes over.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import type { EnvDetail, Host, WsServerMessage } from "../../src/protocol/controller.ts";
import type { AgentVm } from "../../src/protocol/ttstack-agent.ts";
import { TestController } from "../helpers/controller-process.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";
import { startPostgres, type TestPostgres } from "../helpers/postgres.ts";
import { until } from "../helpers/until.ts";

const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbIJ6GrqGRdTcUZw8mTcVYf2QfrKX8Zrj9ZUuAY+u0p corral-test";

describe("two controllers on one PostgreSQL", { timeout: 600_000 }, () => {
  let postgres: TestPostgres;
  let daemon: TestDaemon;
  let one: TestController;
  let two: TestController;
  let host: Host;

  const leaderOf = async (controller: TestController): Promise<boolean> => (await controller.call<{ leader: boolean }>("GET", "/healthz")).body.leader;

  before(async () => {
    postgres = await startPostgres();
    daemon = await TestDaemon.create();
    await daemon.start();
    one = await TestController.create();
    two = await TestController.create();
    await one.start(["--database", postgres.url]);
    await two.start(["--database", postgres.url]);
  });

  after(async () => {
    await one?.dispose();
    await two?.dispose();
    await daemon?.dispose();
    await postgres?.stop();
  });

  test("a host registered through one is served by the other, whose /ws clients hear of it", async () => {
    const socket = new WebSocket(`${two.url.replace("http", "ws")}/ws?token=${two.apiKey}`);
    const messages: WsServerMessage[] = [];
    socket.on("message", (data) => messages.push(JSON.parse(data.toString()) as WsServerMessage));
    await new Promise((resolve, reject) => socket.once("open", resolve).once("error", reject));
    try {
      const added = await one.call<Host>("POST", "/api/hosts", { addr: new URL(daemon.url).host });
      assert.equal(added.status, 201, JSON.stringify(added.body));
      host = added.body;
      await until(() => messages.find((m) => m.type === "hosts-changed"), "hosts-changed on the other controller", 10_000);
      assert.deepEqual(
        (await two.call<Host[]>("GET", "/api/hosts")).body.map((h) => h.id),
        [host.id],
      );
      assert.equal((await one.call("GET", "/healthz")).status, 200);
      const created = await two.call<EnvDetail>("POST", "/api/envs", { id: "shared", ssh_keys: [KEY], vms: [{ image: "base", cpu: 1, mem: 512, disk: 4096 }], lifetime: 3600 });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      await until(() => messages.find((m) => m.type === "envs-changed" && m.payload.envId === "shared"), "envs-changed", 10_000);
      assert.deepEqual(
        (await one.call<EnvDetail>("GET", "/api/envs/shared")).body.vms.map((vm) => vm.id),
        ["shared-1"],
      );
      assert.equal((await one.call("POST", "/api/envs", { id: "shared", ssh_keys: [KEY], vms: [{ image: "base" }] })).status, 409, "the id is taken for both");
    } finally {
      socket.close();
    }
  });

  test("exactly one leads; an expiry happens once; the follower takes over when the leader dies", async () => {
    const leaders = [await leaderOf(one), await leaderOf(two)];
    assert.deepEqual(leaders.filter(Boolean).length, 1, `leaders: ${JSON.stringify(leaders)}`);
    const [leader, follower] = leaders[0] ? [one, two] : [two, one];

    const created = await follower.call<EnvDetail>("POST", "/api/envs", { id: "brief", ssh_keys: [KEY], vms: [{ image: "base", cpu: 1, mem: 512, disk: 4096 }], lifetime: 3 });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await until(async () => ((await follower.call("GET", "/api/envs/brief")).status === 404 ? true : undefined), "the expiry", 60_000, 250);
    const vms = ((await (await fetch(`${daemon.url}/api/vms`)).json()) as { data: AgentVm[] }).data;
    assert.deepEqual(
      vms.map((vm) => vm.id),
      ["shared-1"],
    );
    assert.match(leader.log, /Environment expired and deleted/);
    assert.doesNotMatch(follower.log, /Environment expired and deleted/, "only the leader runs the expiry");

    await leader.stop("SIGKILL");
    await until(() => leaderOf(follower).then((l) => (l ? true : undefined)), "the follower to lead", 30_000, 250);
    // The new leader's heartbeats keep the host's report fresh.
    const seen = (await follower.call<Host>("GET", `/api/hosts/${host.id}`)).body.last_seen_at as number;
    await until(
      async () => (((await follower.call<Host>("GET", `/api/hosts/${host.id}`)).body.last_seen_at as number) > seen ? true : undefined),
      "a heartbeat by the new leader",
      15_000,
    );
    assert.equal((await follower.call("DELETE", "/api/envs/shared")).status, 200);
  });
});
