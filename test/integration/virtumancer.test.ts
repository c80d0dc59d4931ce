// Virtumancer's web UI against a Corral controller and a real daemon, end to end: the requests its store
// sends (web/src/stores/mainStore.js at a458bc2: add a host with {id, uri}, list hosts with their VMs and
// info, a VM's hardware, each power route, /ws subscribe and unsubscribe) with the API key a proxy in front
// of the UI adds, every answer and /ws message checked against Virtumancer's contract schemas
// (test/fixtures/virtumancer/wire.ts) and read through its UI's own computations (ui.ts): host memory is the
// daemon's memory in KiB, no page shows NaN, undefined or null, the Hardware tab does not throw. Also:
// hosts-changed only when hosts change, stats of a stopped or unknown VM sent once and then polling stops,
// errors as Go's http.Error writes them, Virtumancer's later connect/disconnect and stats routes.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import WebSocket from "ws";
import type { AgentInfo } from "../../src/protocol/ttstack-agent.ts";
import { ERROR_CODE_HEADER } from "../../src/http/text-errors.ts";
import { TestController } from "../helpers/controller-process.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";
import { until } from "../helpers/until.ts";
import { brokenText, cpuPercent, datacenterCard, hardwareTab, hostDashboard, powerButtons, vmSummary, type UiHost } from "../fixtures/virtumancer/ui.ts";
import * as wire from "../fixtures/virtumancer/wire.ts";

const DAEMON_CONFIG = `config:
  host_groups:
    - name: sbox
      image: base
      vcpu: 1
      ram_mb: 512
      template: false
`;
const HOST = "kvm-1";
const VM = "web-1";
const BOOT_MS = 240_000;

type Json = Record<string, unknown>;
interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

interface Message {
  at: number;
  raw: string;
  data: { type: string; payload?: Json };
}

describe("Virtumancer's UI against Corral: the whole wire", { timeout: 1_200_000 }, () => {
  let daemon: TestDaemon;
  let controller: TestController;
  let ws: WebSocket;
  const messages: Message[] = [];

  /** What the UI's fetch sends, plus the key a proxy in front of it adds. */
  const api = async (method: string, path: string, body?: unknown): Promise<Answer> => {
    const headers: Record<string, string> = { authorization: `Bearer ${controller.apiKey}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(`${controller.url}/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await response.text();
    let json: unknown;
    if ((response.headers.get("content-type") ?? "").startsWith("application/json")) json = JSON.parse(text);
    return { status: response.status, headers: response.headers, text, json };
  };
  const send = (type: string, payload: Json): void => {
    const message = { type, payload };
    wire.assertFits(wire.StatsSubscription, message, type);
    ws.send(JSON.stringify(message));
  };
  const ofType = (type: string, since = 0): Message[] => messages.filter((m) => m.data.type === type && m.at >= since);
  const statsOf = (vmName: string, since = 0): Json[] =>
    ofType("vm-stats-updated", since)
      .filter((m) => m.data.payload?.vmName === vmName)
      .map((m) => m.data.payload?.stats as Json);
  const pollers = async (): Promise<number> => ((await (await fetch(`${controller.url}/healthz`)).json()) as { statsPollers: number }).statsPollers;

  /** The UI's fetchHosts (mainStore.js:107-129): every host, then its VMs and its info; each answer checked. */
  const fetchHosts = async (): Promise<UiHost[]> => {
    const hosts = await api("GET", "/hosts");
    assert.equal(hosts.status, 200, hosts.text);
    const list = hosts.json as Json[];
    return Promise.all(
      list.map(async (host) => {
        wire.assertFits(wire.Host, host, "a host");
        const vms = await api("GET", `/hosts/${host.id}/vms`);
        assert.equal(vms.status, 200, vms.text);
        for (const vm of vms.json as Json[]) wire.assertFits(wire.VmListEntry, vm, `VM ${vm.name}`);
        const info = await api("GET", `/hosts/${host.id}/info`);
        assert.equal(info.status, 200, info.text);
        wire.assertFits(wire.HostInfo, info.json, "host info");
        return { id: String(host.id), uri: String(host.uri), vms: vms.json as Json[], info: info.json as Json };
      }),
    );
  };
  const vmOf = async (): Promise<Json | undefined> => (await fetchHosts()).find((h) => h.id === HOST)?.vms.find((vm) => vm.name === VM);
  /**
   * Until the VM has libvirt's `state`. For 1 also until it has booted (Corral's `status`): libvirt calls a
   * booting domain running too, but the daemon refuses a reboot until the guest is up (409, said as such).
   */
  const untilState = (state: number, what: string): Promise<Json> =>
    until(
      async () => {
        const vm = await vmOf();
        return vm?.state === state && (state !== 1 || vm.status === "running") ? vm : undefined;
      },
      what,
      BOOT_MS,
      500,
    );

  /** Every page of the UI for the current state, as a user would see it: nothing broken. */
  const assertPagesClean = async (stats?: Json): Promise<void> => {
    const hosts = await fetchHosts();
    const host = hosts.find((h) => h.id === HOST) as UiHost;
    const vm = host.vms.find((v) => v.name === VM) as Json;
    const shown = [...datacenterCard(host), ...hostDashboard(host), ...vmSummary(vm, stats)];
    assert.deepEqual(brokenText(shown), [], shown.join("\n"));
  };

  const power = async (action: string): Promise<void> => {
    const answer = await api("POST", `/hosts/${HOST}/vms/${VM}/${action}`);
    assert.equal(answer.status, 204, `${action}: ${answer.text}`);
    assert.equal(answer.text, "");
  };

  before(async () => {
    daemon = await TestDaemon.create(DAEMON_CONFIG);
    await daemon.start();
    controller = await TestController.create();
    await controller.start();
    ws = new WebSocket(`${controller.url.replace("http", "ws")}/ws`, { headers: { authorization: `Bearer ${controller.apiKey}` } });
    ws.on("message", (data) => {
      const raw = data.toString();
      messages.push({ at: Date.now(), raw, data: JSON.parse(raw) as Message["data"] });
    });
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
  });

  after(async () => {
    ws?.close();
    await controller?.dispose();
    await daemon?.dispose();
  });

  test("health answers without the key; every /ws message of Virtumancer's kinds fits its hub's shapes", async () => {
    const health = await fetch(`${controller.url}/api/v1/health`);
    assert.equal(health.status, 200);
    wire.assertFits(wire.Health, await health.json(), "health");
  });

  test("add a host as the UI does ({id, uri}); a libvirt URI Corral refuses or a body that is not JSON is refused as Go's http.Error", async () => {
    const added = await api("POST", "/hosts", { id: HOST, uri: daemon.url });
    assert.equal(added.status, 201, added.text);
    wire.assertFits(wire.Host, added.json, "the added host");
    assert.deepEqual(added.json, { id: HOST, uri: daemon.url, state: "CONNECTED", task_state: "", auto_reconnect_disabled: false });
    await until(() => (ofType("hosts-changed").length === 1 ? true : undefined), "hosts-changed", 10_000);
    assert.equal(ofType("hosts-changed")[0]?.raw, '{"type":"hosts-changed"}', "no payload, as Go's omitempty leaves it out");

    for (const [what, body, status, code] of [
      ["the UI's default libvirt URI", { id: "kvm-2", uri: "qemu+ssh://root@/system" }, 400, "invalid_request"],
      ["a libvirt URI whose parameter runs a program here", { id: "kvm-2", uri: "qemu+ssh://root@10.0.0.2/system?netcat=/tmp/nc" }, 400, "invalid_request"],
      ["a body that is not JSON", "{", 400, "invalid_json"],
      ["the same id again", { id: HOST, uri: daemon.url }, 409, "conflict"],
      ["a daemon that does not answer", { id: "kvm-3", uri: "http://127.0.0.1:1" }, 502, "host_unreachable"],
    ] as const) {
      const answer = await api("POST", "/hosts", body);
      wire.assertGoTextError(answer, what);
      assert.deepEqual([answer.status, answer.headers.get(ERROR_CODE_HEADER)], [status, code], `${what}: ${answer.text}`);
    }
    const hosts = await fetchHosts();
    assert.deepEqual(
      hosts.map((h) => h.id),
      [HOST],
      "nothing half-added",
    );
    assert.equal(ofType("hosts-changed").length, 1);
  });

  test("host info in libvirt's units: the daemon's memory in KiB, not MiB", async () => {
    // The daemon's agent API answers in TTstack's envelope.
    const agentInfo = ((await (await fetch(`${daemon.url}/api/info`)).json()) as { data: AgentInfo }).data;
    const daemonInfo = { hostname: agentInfo.hostname, ...agentInfo.resource };
    const info = (await api("GET", `/hosts/${HOST}/info`)).json as Json;
    assert.equal(info.memory, daemonInfo.mem_total * 1024);
    assert.deepEqual([info.hostname, info.cpu], [daemonInfo.hostname, daemonInfo.cpu_total]);
    assert.ok((info.cores as number) >= 1 && (info.threads as number) >= 1, JSON.stringify(info));
    const [host] = await fetchHosts();
    // The Datacenter card: GB from KiB, as the UI divides.
    assert.equal(datacenterCard(host as UiHost)[2], `Memory 0 GB / ${(daemonInfo.mem_total / 1024).toFixed(1)} GB`);
    const unknown = await api("GET", "/hosts/nope/info");
    wire.assertGoTextError(unknown, "an unknown host's info");
    assert.deepEqual([unknown.status, unknown.headers.get(ERROR_CODE_HEADER)], [404, "host_not_found"]);
  });

  test("a VM made on the daemon shows in the UI with every field it reads; vms-changed, not hosts-changed", async () => {
    const before = Date.now();
    const made = await fetch(`${daemon.url}/api/vms`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ vm_id: VM, image: "base", cpu: 1, mem: 512, disk: 2048 }),
    });
    assert.equal(made.status, 201, await made.text());
    const vm = await untilState(1, "the VM to run");
    await until(() => (ofType("vms-changed", before).some((m) => m.data.payload?.hostId === HOST) ? true : undefined), "vms-changed for the host", 20_000);
    assert.deepEqual([vm.vcpu, vm.vcpu_count, vm.max_mem, vm.memory, vm.memory_bytes, vm.id], [1, 1, 512 * 1024, 512 * 1024, 512 * 1024 * 1024, 1]);
    assert.deepEqual(powerButtons(vm), ["shutdown", "reboot", "forceoff"]);
    const running = await until(
      async () => {
        const current = await vmOf();
        return current && (current.uptime as number) > 0 ? current : undefined;
      },
      "an uptime",
      20_000,
      500,
    );
    assert.ok((running.uptime as number) < 3600, `uptime ${String(running.uptime)} s`);
    await assertPagesClean();
    assert.equal(ofType("hosts-changed").length, 1, "a VM's change is not a change of hosts");
  });

  test("the VM page: stats while subscribed, CPU use the UI can compute, the stats route, the Hardware tab", async () => {
    const since = Date.now();
    send("subscribe-vm-stats", { hostId: HOST, vmName: VM });
    await until(() => (statsOf(VM, since).length >= 2 ? true : undefined), "two stats messages", 60_000, 250);
    const [first, second] = statsOf(VM, since) as [Json, Json];
    assert.deepEqual([second.state, second.vcpu, second.max_mem], [1, 1, 512 * 1024]);
    const percent = cpuPercent(first, second, 2000);
    assert.ok(percent >= 0 && percent <= 100, `CPU ${percent}%`);
    await assertPagesClean(second);
    assert.equal(await pollers(), 1);

    const stats = await api("GET", `/hosts/${HOST}/vms/${VM}/stats`);
    assert.equal(stats.status, 200, stats.text);
    wire.assertFits(wire.VMStats, stats.json, "the stats route");

    const hardware = await api("GET", `/hosts/${HOST}/vms/${VM}/hardware`);
    assert.equal(hardware.status, 200, hardware.text);
    wire.assertFits(wire.HardwareInfo, hardware.json, "hardware");
    const rows = hardwareTab(hardware.json);
    assert.match(rows[0] ?? "", new RegExp(`^disk vda virtio ${daemon.stateDir}/vms/${VM}/\\S+ qcow2$`));
    assert.match(rows[1] ?? "", /^net eth0 52:54:00(:[0-9a-f]{2}){3} {2}virtio$/);
    assert.deepEqual(brokenText(rows), []);
  });

  test("each power route answers 204: reboot and forcereset come back running", async () => {
    for (const action of ["reboot", "forcereset"]) {
      const since = Date.now();
      await power(action);
      await until(() => (ofType("vms-changed", since).length > 0 ? true : undefined), `vms-changed after ${action}`, 20_000);
      await untilState(1, `the VM to run after ${action}`);
    }
    const missing = await api("POST", `/hosts/${HOST}/vms/nope-1/start`);
    wire.assertGoTextError(missing, "an unknown VM");
    assert.deepEqual([missing.status, missing.headers.get(ERROR_CODE_HEADER)], [404, "vm_not_found"]);
  });

  test("shutdown: the stopped VM's stats are sent once, then polling stops; Start is offered, uptime is N/A", async () => {
    // The UI subscribes again whenever it reads its host's VMs again (VmView.vue:171-197).
    send("subscribe-vm-stats", { hostId: HOST, vmName: VM });
    await until(async () => ((await pollers()) === 1 ? true : undefined), "the poller to run", 10_000);
    const since = Date.now();
    await power("shutdown");
    const vm = await untilState(5, "the VM to be shut off");
    await until(async () => ((await pollers()) === 0 ? true : undefined), "the polling to stop", 20_000, 250);
    const after = statsOf(VM, since);
    assert.ok(after.length >= 1, "the last stats were sent");
    // The last poll saw it shutting down (4) or off (5): either way it no longer runs, and that was the end.
    assert.ok([4, 5].includes(after.at(-1)?.state as number), JSON.stringify(after));
    assert.equal(after.filter((s) => s.state !== 1).length, 1, "a stopped VM's stats once");
    const count = statsOf(VM).length;
    await sleep(5000);
    assert.equal(statsOf(VM).length, count, "no stats once stopped");
    assert.deepEqual(powerButtons(vm), ["start"]);
    assert.equal(vm.uptime, -1);
    await assertPagesClean(after.at(-1));
    assert.ok(vmSummary(vm).includes("Uptime N/A"));
  });

  test("start, then a new subscription polls again; forceoff shuts it off at once", async () => {
    await power("start");
    await untilState(1, "the VM to run again");
    // The UI subscribes again when its host's VMs are read again (VmView.vue:171-197).
    const since = Date.now();
    send("subscribe-vm-stats", { hostId: HOST, vmName: VM });
    await until(() => (statsOf(VM, since).some((s) => s.state === 1) ? true : undefined), "stats of the running VM", 60_000, 250);
    send("unsubscribe-vm-stats", { hostId: HOST, vmName: VM });
    await until(async () => ((await pollers()) === 0 ? true : undefined), "unsubscribing to stop the polling", 10_000);
    const count = statsOf(VM).length;
    await sleep(5000);
    assert.equal(statsOf(VM).length, count, "no stats after unsubscribing");
    await power("forceoff");
    await untilState(5, "the VM to be off");
  });

  test("an unknown VM's stats: shut off, once; no polling", async () => {
    const since = Date.now();
    send("subscribe-vm-stats", { hostId: HOST, vmName: "nope-1" });
    await until(() => (statsOf("nope-1", since).length === 1 ? true : undefined), "the unknown VM's stats", 20_000);
    assert.deepEqual(statsOf("nope-1", since)[0], { state: 5, memory: 0, max_mem: 0, vcpu: 0, cpu_time: 0, disk_stats: [], net_stats: [] });
    await until(async () => ((await pollers()) === 0 ? true : undefined), "no poller for it", 10_000);
    await sleep(4000);
    assert.equal(statsOf("nope-1", since).length, 1);
  });

  test("disconnect: DISCONNECTED, heartbeats leave it so, its VM routes refuse; connect brings it back", async () => {
    const since = Date.now();
    const disconnected = await api("POST", `/hosts/${HOST}/disconnect`);
    assert.equal(disconnected.status, 204, disconnected.text);
    await until(() => (ofType("host-connection-changed", since).length === 1 ? true : undefined), "host-connection-changed", 10_000);
    assert.deepEqual(ofType("host-connection-changed", since)[0]?.data.payload, { hostId: HOST, connected: false });
    await sleep(3000);
    const listed = ((await api("GET", "/hosts")).json as Json[])[0];
    assert.deepEqual([listed?.state, listed?.auto_reconnect_disabled], ["DISCONNECTED", true], "heartbeats do not bring it back");
    const ttstackView = await controller.call<{ state: string }>("GET", `/api/hosts/${HOST}`);
    assert.equal(ttstackView.body.state, "offline");
    const refused = await api("POST", `/hosts/${HOST}/vms/${VM}/start`);
    wire.assertGoTextError(refused, "an action on a disconnected host");
    assert.deepEqual([refused.status, refused.headers.get(ERROR_CODE_HEADER)], [409, "conflict"]);
    assert.match(refused.text, /disconnected.*connect/);
    assert.equal((await api("POST", `/hosts/${HOST}/disconnect`)).status, 204, "twice is fine");

    const connected = await api("POST", `/hosts/${HOST}/connect`);
    assert.equal(connected.status, 204, connected.text);
    const back = ((await api("GET", "/hosts")).json as Json[])[0];
    assert.deepEqual([back?.state, back?.auto_reconnect_disabled], ["CONNECTED", false]);
    assert.deepEqual(
      ofType("host-connection-changed", since).map((m) => m.data.payload?.connected),
      [false, true],
    );
    assert.equal((await api("POST", "/hosts/nope/connect")).status, 404);
  });

  test("hosts-changed came only with the hosts' own changes; delete the host (204) and it is gone", async () => {
    // Added, disconnected, connected: three.
    assert.equal(ofType("hosts-changed").length, 3, JSON.stringify(ofType("hosts-changed").map((m) => new Date(m.at).toISOString())));
    const removed = await api("DELETE", `/hosts/${HOST}`);
    assert.equal(removed.status, 204, removed.text);
    await until(() => (ofType("hosts-changed").length === 4 ? true : undefined), "hosts-changed for the removal", 10_000);
    assert.deepEqual(await fetchHosts(), []);
    const again = await api("DELETE", `/hosts/${HOST}`);
    wire.assertGoTextError(again, "an unknown host");
    assert.equal(again.status, 404);
    // Every message of Virtumancer's kinds was in its hub's shape.
    for (const message of messages) {
      const schema = wire.serverMessageSchema(message.data.type);
      if (schema) wire.assertFits(schema, message.data, `/ws ${message.data.type}`);
      else assert.ok(["envs-changed", "error"].includes(message.data.type), message.raw);
    }
  });
});
