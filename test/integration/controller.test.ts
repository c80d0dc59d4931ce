// The fleet controller over two real daemons on this machine (own ports and state directories, one with
// auth): hosts registered by TTstack's {addr} and Virtumancer's {id, uri}; an environment spread over both
// hosts (CPU overcommit 1: one 2-vCPU VM per host); ssh into its VMs through their mapped port 22 with the
// given key; stop/start; Virtumancer's VM routes and power actions; /ws events and stats only while
// subscribed; a host that holds VMs cannot be removed; a lifetime of a few seconds leaves nothing on any host;
// a killed daemon goes offline, a deletion waits for it, and when it is back it is online and reconciled;
// bad bodies get 4xx JSON.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import type { Env, EnvDetail, FleetImage, FleetStatus, FleetVm, Host, HostVm, WsServerMessage } from "../../src/protocol/controller.ts";
import type { AgentVm } from "../../src/protocol/ttstack-agent.ts";
import { corral } from "../helpers/cli-process.ts";
import { TestController } from "../helpers/controller-process.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";
import { makeSshKey, sshAsRoot, type SshKey } from "../helpers/ssh.ts";
import { until } from "../helpers/until.ts";

const DAEMON_CONFIG = (auth: boolean) => `config:
  api:
    auth:
      enabled: ${auth}
  host_groups:
    - name: sbox
      image: base
      vcpu: 1
      ram_mb: 512
      template: false
`;

interface Ws {
  messages: WsServerMessage[];
  socket: WebSocket;
  send(message: unknown): void;
  close(): Promise<void>;
}

async function openWs(url: string): Promise<Ws> {
  const socket = new WebSocket(url);
  const messages: WsServerMessage[] = [];
  socket.on("message", (data) => messages.push(JSON.parse(data.toString()) as WsServerMessage));
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  return {
    messages,
    socket,
    send: (message) => socket.send(JSON.stringify(message)),
    close: () =>
      new Promise<void>((resolve) => {
        socket.once("close", () => resolve());
        socket.close();
      }),
  };
}

describe("fleet controller over two daemons", { timeout: 900_000 }, () => {
  let a: TestDaemon;
  let b: TestDaemon;
  let bToken: string;
  let bPort: string;
  let controller: TestController;
  let key: SshKey;
  let publicKey: string;
  let hostA: Host;

  const env = async (id: string): Promise<EnvDetail> => (await controller.call<EnvDetail>("GET", `/api/envs/${id}`)).body;
  const untilVmsRunning = (id: string): Promise<EnvDetail> =>
    until(
      async () => {
        const current = await env(id);
        return current.vms.every((vm) => vm.status === "running") ? current : undefined;
      },
      `every VM of ${id} to run`,
      180_000,
      250,
    );
  const daemonVms = async (daemon: TestDaemon, token?: string): Promise<AgentVm[]> =>
    ((await (await fetch(`${daemon.url}/api/vms`, { headers: token ? { authorization: `Bearer ${token}` } : {} })).json()) as { data: AgentVm[] }).data;

  before(async () => {
    key = await makeSshKey("corral-fleet-test");
    publicKey = key.publicKey;
    a = await TestDaemon.create(DAEMON_CONFIG(false));
    b = await TestDaemon.create(DAEMON_CONFIG(true));
    await Promise.all([a.start(), b.start()]);
    bToken = readFileSync(join(b.stateDir, "auth", "token"), "utf8").trim();
    bPort = new URL(b.url).port;
    controller = await TestController.create();
    await controller.start(["--overcommit", "cpu=1"]);
  });

  after(async () => {
    await controller?.dispose();
    await Promise.all([a?.dispose(), b?.dispose()]);
    await key?.dispose();
  });

  test("hosts: {addr} and {id, uri, token}; both sets of fields; 409 for a repeat; bad bodies and unreachable hosts are refused", async () => {
    const first = await controller.call<Host>("POST", "/api/hosts", { addr: new URL(a.url).host });
    assert.equal(first.status, 201, JSON.stringify(first.body));
    hostA = first.body;
    assert.match(hostA.id, /^h-[0-9a-f]{12}$/, "without an id the host's own is used");
    assert.deepEqual([hostA.addr, hostA.uri, hostA.state, hostA.engines, hostA.storage], [new URL(a.url).host, a.url, "online", ["qemu"], "file"]);
    assert.ok(hostA.images.includes("base") && hostA.resource.cpu_total > 0 && hostA.registered_at > 1e9, JSON.stringify(hostA));
    assert.equal(hostA.kind, "corral", "a Corral daemon, told apart by its /api/info");
    const second = await controller.call<Host>("POST", "/api/hosts", { id: "host-b", uri: b.url, token: bToken });
    assert.equal(second.status, 201, JSON.stringify(second.body));
    assert.equal(second.body.id, "host-b");

    const cases: [unknown, number, string, RegExp][] = [
      [{}, 400, "invalid_request", /"addr".*"uri"/],
      // libvirt URIs are libvirt hosts (libvirt-hosts.test.ts); those refused never reach virsh.
      [{ id: "x", uri: "qemu+ssh://root@kvm/system?command=/bin/sh" }, 400, "invalid_request", /parameter "command" is refused/],
      [{ id: "x", uri: "xen:///system" }, 400, "invalid_request", /qemu driver only/],
      [{ id: "x", uri: "qemu:///system", token: "t" }, 400, "invalid_request", /takes no "token"/],
      [{ id: "x", uri: "ftp://kvm:21" }, 400, "invalid_request", /qemu driver only/],
      [{ addr: "127.0.0.1" }, 400, "invalid_request", /HOST:PORT/],
      [{ addr: "127.0.0.1:1" }, 502, "host_unreachable", /did not answer/],
      [{ id: "host-c", uri: b.url }, 502, "host_unreachable", /401/],
      [{ id: "host-b", uri: b.url, token: bToken }, 409, "conflict", /host-b/],
      [{ id: "bad id!", uri: b.url }, 400, "invalid_request", /id/],
      [{ addr: 8080 }, 400, "invalid_request", /addr/],
    ];
    for (const [body, status, code, message] of cases) {
      const answer = await controller.call<{ error: string; code: string }>("POST", "/api/hosts", body);
      assert.equal(answer.status, status, JSON.stringify([body, answer.body]));
      assert.equal(answer.body.code, code, JSON.stringify(answer.body));
      assert.match(answer.body.error, message);
    }
    assert.deepEqual((await controller.call<Host[]>("GET", "/api/hosts")).body.map((h) => h.id).sort(), [hostA.id, "host-b"].sort());
    const info = (await controller.call<{ hostname: string; cpu: number; memory: number; cores: number; threads: number }>("GET", "/api/hosts/host-b/info")).body;
    assert.ok(info.cpu >= 1 && info.memory > 1e9 && info.cores >= 1 && info.threads >= 1 && info.hostname, JSON.stringify(info));
    assert.equal((await controller.call("GET", "/api/hosts", undefined, null)).status, 401);
    assert.equal((await controller.call("GET", "/api/hosts", undefined, "wrong-key-0123456789")).status, 401);
  });

  test("an environment spans both hosts; ssh into each VM with the key; stop keeps disks, start boots them", async () => {
    const created = await controller.call<EnvDetail>("POST", "/api/envs", {
      id: "team",
      owner: "alice",
      ssh_keys: [publicKey],
      vms: [
        { image: "base", cpu: 2, mem: 512, disk: 4096, ports: [8080] },
        { image: "base", cpu: 2, mem: 512, disk: 4096 },
      ],
      lifetime: 3600,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const team = created.body;
    assert.deepEqual([team.env.state, team.env.status], ["active", "running"]);
    assert.equal(team.env.owner, "alice");
    assert.equal(team.env.expires_at - team.env.created_at, 3600);
    assert.deepEqual(
      team.vms.map((vm) => vm.id),
      ["team-1", "team-2"],
    );
    assert.deepEqual(team.vms.map((vm) => vm.host_id).sort(), [hostA.id, "host-b"].sort(), "one VM per host");
    assert.ok(
      team.vms.every((vm) => vm.host_addr === "127.0.0.1" && vm.port_map["22"]),
      JSON.stringify(team.vms),
    );
    assert.ok(team.vms[0]?.port_map["8080"]);
    const running = await untilVmsRunning("team");
    for (const vm of running.vms) assert.equal(await sshAsRoot(key, vm.port_map["22"] as number, "hostname"), `${vm.id}\n`);
    await sshAsRoot(key, running.vms[0]?.port_map["22"] as number, "echo kept > /root/mark; sync");

    const status = (await controller.call<FleetStatus>("GET", "/api/status")).body;
    assert.deepEqual([status.hosts_online, status.total_envs, status.total_vms, status.vms_running, status.cpu_reserved, status.mem_reserved], [2, 1, 2, 2, 4, 1024]);
    const vm = (await controller.call<FleetVm>("GET", "/api/vms/team-2")).body;
    assert.deepEqual([vm.env_id, vm.cpu, vm.state, vm.status], ["team", 2, "running", "running"]);
    const images = (await controller.call<FleetImage[]>("GET", "/api/images")).body;
    assert.deepEqual(
      images
        .filter((i) => i.name === "base")
        .map((i) => i.host_id)
        .sort(),
      [hostA.id, "host-b"].sort(),
    );

    const stopped = await controller.call("POST", "/api/envs/team/stop");
    assert.deepEqual([stopped.status, stopped.raw], [200, { ok: true }]);
    const afterStop = await env("team");
    assert.deepEqual([afterStop.env.state, afterStop.env.status, ...afterStop.vms.map((v) => v.status)], ["stopped", "stopped", "stopped", "stopped"]);
    const started = await controller.call("POST", "/api/envs/team/start");
    assert.deepEqual([started.status, started.raw], [200, { ok: true }]);
    assert.equal((await env("team")).env.status, "running");
    const back = await untilVmsRunning("team");
    assert.deepEqual(
      back.vms.map((v) => v.port_map),
      running.vms.map((v) => v.port_map),
      "the ports stay",
    );
    assert.equal(await sshAsRoot(key, back.vms[0]?.port_map["22"] as number, "cat /root/mark"), "kept\n");
  });

  test("Virtumancer: VMs per host, hardware, power actions -> 204; /ws sees vms-changed, and stats only while subscribed", async () => {
    const onA = (await env("team")).vms.find((vm) => vm.host_id === hostA.id) as FleetVm;
    const list = (await controller.call<HostVm[]>("GET", `/api/hosts/${hostA.id}/vms`)).body;
    const listed = list.find((vm) => vm.name === onA.id);
    assert.deepEqual([listed?.vcpu_count, listed?.memory_bytes, listed?.state, listed?.env_id], [2, 512 * 1024 * 1024, 1, "team"]);
    const hardware = (
      await controller.call<{ disks: { path: string; target: { dev: string } }[]; networks: { mac: { address: string } }[] }>(
        "GET",
        `/api/hosts/${hostA.id}/vms/${onA.id}/hardware`,
      )
    ).body;
    assert.equal(hardware.disks[0]?.target.dev, "vda");
    assert.match(hardware.disks[0]?.path ?? "", new RegExp(`${a.stateDir}/vms/${onA.id}/`));
    assert.match(hardware.networks[0]?.mac.address ?? "", /^52:54:00:/);

    assert.equal((await controller.call("GET", "/ws", undefined, null)).status, 401);
    const ws = await openWs(`${controller.url.replace("http", "ws")}/ws?token=${controller.apiKey}`);
    try {
      const action = await controller.call("POST", `/api/hosts/${hostA.id}/vms/${onA.id}/action`, { action: "reboot" });
      assert.equal(action.status, 204);
      await until(() => ws.messages.find((m) => m.type === "vms-changed" && m.payload.hostId === hostA.id), "vms-changed for host A", 10_000);
      assert.ok(!ws.messages.some((m) => m.type === "vm-stats-updated"), "no stats before subscribing");
      await untilVmsRunning("team");

      ws.send({ type: "subscribe-vm-stats", payload: { hostId: hostA.id, vmName: onA.id } });
      const stats = await until(() => ws.messages.find((m) => m.type === "vm-stats-updated"), "vm-stats-updated", 20_000);
      assert.equal(stats.type, "vm-stats-updated");
      if (stats.type === "vm-stats-updated") {
        assert.deepEqual([stats.payload.hostId, stats.payload.vmName, stats.payload.stats.vcpu, stats.payload.stats.max_mem], [hostA.id, onA.id, 2, 512 * 1024]);
        assert.ok(stats.payload.stats.cpu_time > 0);
      }
      await until(() => (ws.messages.filter((m) => m.type === "vm-stats-updated").length >= 2 ? true : undefined), "a second stats message", 20_000);
      assert.equal((await controller.call<{ statsPollers: number }>("GET", "/healthz")).body.statsPollers, 1);
      ws.send({ type: "unsubscribe-vm-stats", payload: { hostId: hostA.id, vmName: onA.id } });
      await until(async () => ((await controller.call<{ statsPollers: number }>("GET", "/healthz")).body.statsPollers === 0 ? true : undefined), "polling to stop");
      const count = ws.messages.filter((m) => m.type === "vm-stats-updated").length;
      await sleep(5000);
      assert.equal(ws.messages.filter((m) => m.type === "vm-stats-updated").length, count, "no stats after unsubscribing");

      ws.send({ type: "dance", payload: {} });
      ws.send({ type: "subscribe-vm-stats", payload: { hostId: "nope", vmName: "x-1" } });
      ws.socket.send("not json");
      await until(() => (ws.messages.filter((m) => m.type === "error").length >= 3 ? true : undefined), "three error messages");
      const codes = ws.messages.filter((m) => m.type === "error").map((m) => (m.type === "error" ? m.payload.code : ""));
      assert.deepEqual(codes.sort(), ["host_not_found", "invalid_json", "invalid_request"]);

      const bad = await controller.call<{ code: string }>("POST", `/api/hosts/${hostA.id}/vms/${onA.id}/action`, { action: "explode" });
      assert.deepEqual([bad.status, bad.body.code], [400, "invalid_request"]);
      const missing = await controller.call<{ code: string }>("POST", `/api/hosts/${hostA.id}/vms/nope-1/action`, { action: "start" });
      assert.deepEqual([missing.status, missing.body.code], [404, "vm_not_found"]);
    } finally {
      await ws.close();
    }
  });

  test("a host that holds VMs cannot be removed (409)", async () => {
    const answer = await controller.call<{ code: string; error: string }>("DELETE", "/api/hosts/host-b");
    assert.equal(answer.status, 409, JSON.stringify(answer.body));
    assert.equal(answer.body.code, "conflict");
    assert.equal((await controller.call("GET", "/api/hosts/host-b")).status, 200);
  });

  test("bad environment bodies: 4xx JSON naming the problem; nothing is stored", async () => {
    const vm = { image: "base", cpu: 1, mem: 512 };
    const cases: [unknown, number, string, RegExp][] = [
      [{ id: "e1", ssh_keys: [publicKey], vms: [{ ...vm, engine: "kvm2" }] }, 400, "unsupported_engine", /"kvm2".*"qemu", "firecracker"/],
      [{ id: "e1", ssh_keys: [publicKey], vms: [{ ...vm, engine: "firecracker" }] }, 422, "no_capacity", /lack engine "firecracker"/],
      [{ id: "e1", ssh_keys: [publicKey], vms: [{ ...vm, cpu: -2 }] }, 400, "invalid_request", /cpu/],
      [{ id: "team", ssh_keys: [publicKey], vms: [vm] }, 409, "conflict", /team/],
      [{ id: "bad id", ssh_keys: [publicKey], vms: [vm] }, 400, "invalid_request", /id/],
      [{ id: ".hidden", vms: [vm] }, 400, "invalid_request", /id/],
      [{ id: "a..b", vms: [vm] }, 400, "invalid_request", /id/],
      [{ id: "x".repeat(129), vms: [vm] }, 400, "invalid_request", /id/],
      [{ id: "e1", ssh_keys: [publicKey], vms: [] }, 400, "invalid_request", /vms/],
      [{ id: "e1", ssh_keys: "not a list", vms: [vm] }, 400, "invalid_request", /ssh_keys/],
      [{ id: "e1", ssh_keys: [publicKey], vms: [{ ...vm, cpu: 64 }] }, 422, "no_capacity", /No host can take VM 1/],
      [{ id: "e1", ssh_keys: [publicKey], vms: [{ ...vm, image: "nope" }] }, 422, "no_capacity", /image "nope"/],
      [{ id: "e1", ssh_keys: [publicKey], vms: [vm], lifetime: -1 }, 400, "invalid_request", /lifetime/],
    ];
    for (const [body, status, code, message] of cases) {
      const answer = await controller.call<{ ok: boolean; error: string; code: string }>("POST", "/api/envs", body);
      assert.equal(answer.status, status, JSON.stringify([body, answer.body]));
      assert.deepEqual([answer.body.ok, answer.body.code], [false, code], JSON.stringify(answer.body));
      assert.match(answer.body.error, message);
    }
    assert.deepEqual(
      (await controller.call<Env[]>("GET", "/api/envs")).body.map((e) => e.id),
      ["team"],
    );
    assert.equal((await controller.call<{ code: string }>("GET", "/api/envs/nope")).body.code, "env_not_found");
  });

  test("a daemon killed goes offline; a deletion waits for it; back online it is reconciled and the deletion finishes", async () => {
    const ws = await openWs(`${controller.url.replace("http", "ws")}/ws?token=${controller.apiKey}`);
    try {
      await b.kill9();
      await until(async () => ((await controller.call<Host>("GET", "/api/hosts/host-b")).body.state === "offline" ? true : undefined), "host-b to be offline", 20_000);
      assert.ok(ws.messages.some((m) => m.type === "hosts-changed"));
      const removal = await controller.call("DELETE", "/api/envs/team");
      assert.deepEqual([removal.status, removal.raw], [202, { ok: true }]);
      const deleting = await env("team");
      assert.equal(deleting.env.status, "deleting");
      assert.deepEqual(
        deleting.vms.map((vm) => vm.host_id),
        ["host-b"],
        "the VM on the host that answered is gone",
      );
      assert.equal((await daemonVms(a)).filter((vm) => vm.env_id === "team").length, 0);

      await b.start(["--port", bPort], bToken);
      await until(async () => ((await controller.call<Host>("GET", "/api/hosts/host-b")).body.state === "online" ? true : undefined), "host-b to be online", 30_000);
      await until(async () => ((await controller.call("GET", "/api/envs/team")).status === 404 ? true : undefined), "the deletion to finish", 30_000);
      assert.deepEqual(await daemonVms(b, bToken), [], "the VM on host-b is deleted once it is back");
      const hostB = (await controller.call<Host>("GET", "/api/hosts/host-b")).body;
      assert.deepEqual(hostB.reserved, { cpu: 0, mem: 0, disk: 0 });
    } finally {
      await ws.close();
    }
  });

  test("a VM changed behind the controller's back is reconciled: stopped on its host shows stopped, deleted shows lost", async () => {
    const created = await controller.call<EnvDetail>("POST", "/api/envs", { id: "solo", ssh_keys: [publicKey], vms: [{ image: "base", cpu: 1, mem: 512, disk: 4096 }] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const vm = created.body.vms[0] as FleetVm;
    const daemon = vm.host_id === "host-b" ? b : a;
    const headers = vm.host_id === "host-b" ? { authorization: `Bearer ${bToken}` } : undefined;
    await untilVmsRunning("solo");
    assert.equal((await fetch(`${daemon.url}/api/vms/${vm.id}/stop`, { method: "POST", headers })).status, 200);
    await until(async () => ((await env("solo")).vms[0]?.status === "stopped" ? true : undefined), "the controller to see it stopped", 15_000);
    assert.equal((await fetch(`${daemon.url}/api/vms/${vm.id}`, { method: "DELETE", headers })).status, 200);
    await until(async () => ((await env("solo")).vms[0]?.status === "lost" ? true : undefined), "the controller to see it lost", 15_000);
    assert.equal((await env("solo")).vms[0]?.state, "failed", "TTstack's VmState for a lost VM");
    assert.equal((await controller.call("DELETE", "/api/envs/solo")).status, 200);
  });

  test("the CLI: host list/show, env create with --vm and --ssh-key, show with the ssh line, stop, start, status, delete", async () => {
    const cli = { CORRAL_CONTROLLER: controller.url, CORRAL_API_KEY: controller.apiKey };
    const hosts = await corral(["host", "list"], cli);
    assert.equal(hosts.code, 0, hosts.stderr);
    assert.match(hosts.stdout, /^ID\s+STATE\s+ADDR/m);
    assert.match(hosts.stdout, /host-b\s+online/);
    const created = await corral(
      ["env", "create", "cli", "--vm", "image=base,cpu=1,mem=512,disk=4096,ports=8080", "--ssh-key", `${key.privateKeyFile}.pub`, "--owner", "bob", "--lifetime", "10m"],
      cli,
    );
    assert.equal(created.code, 0, created.stderr + created.stdout);
    const sshLine = /ssh -p (\d+) root@127\.0\.0\.1/.exec(created.stdout);
    assert.ok(sshLine, created.stdout);
    assert.match(created.stdout, /8080 -> 127\.0\.0\.1:\d+/);
    const placed = (await untilVmsRunning("cli")).vms[0] as FleetVm;
    const shown = await corral(["host", "show", placed.host_id], cli);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /cli-1\s+running\s+1\s+512 MiB\s+cli/);
    assert.equal(await sshAsRoot(key, Number(sshLine[1]), "hostname"), "cli-1\n");
    const list = await corral(["env", "list"], cli);
    assert.match(list.stdout, /^cli\s+bob\s+running\s+1\s+(9|10)m/m);
    const status = await corral(["status"], cli);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /Hosts: 2 online, 0 offline/);
    assert.match(status.stdout, /Envs:\s+1/);
    assert.equal((await corral(["env", "stop", "cli"], cli)).code, 0);
    assert.equal((await env("cli")).env.status, "stopped");
    assert.equal((await corral(["env", "start", "cli"], cli)).code, 0);
    assert.equal((await env("cli")).env.status, "running");
    const deleted = await corral(["env", "delete", "cli"], cli);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal((await controller.call("GET", "/api/envs/cli")).status, 404);

    const bad = await corral(["env", "create", "x", "--vm", "image=base,cpu=two", "--ssh-key", `${key.privateKeyFile}.pub`], cli);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /cpu must be a whole number/);
    const wrongKey = await corral(["status"], { ...cli, CORRAL_API_KEY: "wrong-key-0123456789" });
    assert.notEqual(wrongKey.code, 0);
    assert.match(wrongKey.stderr, /API key/i);
  });

  test("a lifetime of a few seconds: the environment expires and nothing is left on any host", async () => {
    const created = await controller.call<EnvDetail>("POST", "/api/envs", {
      id: "brief",
      ssh_keys: [publicKey],
      vms: [
        { image: "base", cpu: 2, mem: 512, disk: 4096 },
        { image: "base", cpu: 2, mem: 512, disk: 4096 },
      ],
      lifetime: 4,
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.env.expires_at - created.body.env.created_at, 4);
    await until(async () => ((await controller.call("GET", "/api/envs/brief")).status === 404 ? true : undefined), "the environment to expire", 60_000, 250);
    assert.deepEqual(
      (await daemonVms(a)).map((vm) => vm.id),
      [],
    );
    assert.deepEqual(
      (await daemonVms(b, bToken)).map((vm) => vm.id),
      [],
    );
    const status = (await controller.call<FleetStatus>("GET", "/api/status")).body;
    assert.deepEqual([status.total_envs, status.total_vms, status.cpu_reserved], [0, 0, 0]);
    assert.match(controller.log, /Environment expired and deleted/);
  });

  test('an empty host can be removed (200 {"ok":true})', async () => {
    const removed = await controller.call("DELETE", "/api/hosts/host-b");
    assert.deepEqual([removed.status, removed.raw], [200, { ok: true }]);
    assert.equal((await controller.call<{ code: string }>("GET", "/api/hosts/host-b")).body.code, "host_not_found");
  });
});
