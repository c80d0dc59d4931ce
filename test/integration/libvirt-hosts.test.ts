// libvirt hosts in the controller, end to end: a real controller and the real libvirtd, reached as
// qemu:///system and, through a key-only sshd on loopback, as qemu+ssh://root@127.0.0.1:PORT/system. A small
// domain (Corral's kernel by direct boot, type='qemu') is defined and started by the test: it is listed through
// Virtumancer's /api/v1 and the seed's /api routes with libvirt's units (compared with `virsh dominfo`), its
// hardware read from the domain XML, each of the five power actions run and seen in `virsh domstate`, its
// live stats sent over /ws. Connection state: disconnect and connect; libvirtd killed, the host goes offline
// with the reason, libvirtd started again, the host comes back by itself. What a libvirt host cannot do: bad
// URIs and parameters that would run programs here (400, nothing stored), a token (400), environments (422
// no_capacity naming the kind), a VM's shell or log (unsupported_by_host). TTstack's /api/hosts wire stays
// valid with such hosts (TestController.call checks every TTstack answer against TTstack's types). The
// dashboard, in Chromium: the hosts with their kind and URI, the domain's page, its power buttons.
// libvirtd is shared with other tests of this machine: it is killed once, and started again at once.
import assert from "node:assert/strict";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import WebSocket from "ws";
import type { Host } from "../../src/protocol/controller.ts";
import { launchBrowser } from "../helpers/browser.ts";
import { TestController } from "../helpers/controller-process.ts";
import { openRefused } from "../helpers/raw-websocket.ts";
import { defineTestDomain, ensureLibvirtd, TEST_MAC, virsh, type TestDomain } from "../helpers/libvirt.ts";
import { startSshd, type Sshd } from "../helpers/sshd.ts";
import { until } from "../helpers/until.ts";
import { brokenText, datacenterCard, hardwareTab, hostDashboard, vmSummary, type UiHost } from "../fixtures/virtumancer/ui.ts";
import * as wire from "../fixtures/virtumancer/wire.ts";

const LOCAL = "kvm-local";
const REMOTE = "kvm-ssh";
/** A domain boots in seconds under TCG, but the machine is shared: waits are generous. */
const WAIT_MS = 120_000;
/** Screenshots of the dashboard, for a person to look at (ignored by git). */
const ARTIFACTS = join("test-artifacts", "libvirt-hosts");

type Json = Record<string, unknown>;

/**
 * Kills the libvirt daemon (by the pid it wrote) and waits until it is gone; its domains' QEMU processes live
 * on, as they do when libvirtd stops. ensureLibvirtd() starts it again.
 */
async function killLibvirtd(): Promise<void> {
  const pid = Number((await readFile("/run/libvirtd.pid", "utf8")).trim());
  assert.ok(pid > 1, "libvirtd's pid file names a process");
  process.kill(pid, "SIGKILL");
  await until(
    () => {
      try {
        process.kill(pid, 0);
        return undefined;
      } catch {
        return true;
      }
    },
    "libvirtd to be gone",
    WAIT_MS,
    100,
  );
}

/** `virsh dominfo`'s fields by name ("Max memory" → "196608 KiB"). */
async function dominfo(name: string): Promise<Record<string, string>> {
  const fields: Record<string, string> = {};
  for (const line of (await virsh(["dominfo", "--domain", name])).split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) fields[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  return fields;
}

describe("libvirt hosts: registered by URI, listed, powered, watched", { timeout: 1_200_000 }, () => {
  let controller: TestController;
  let sshd: Sshd;
  let domain: TestDomain;
  let ws: WebSocket;
  const messages: { type: string; payload?: Json }[] = [];
  let sshUri = "";

  const v1 = async (method: string, path: string, body?: unknown): Promise<{ status: number; text: string; json: unknown }> => {
    const headers: Record<string, string> = { authorization: `Bearer ${controller.apiKey}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(`${controller.url}/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    return { status: response.status, text, json: (response.headers.get("content-type") ?? "").startsWith("application/json") ? JSON.parse(text) : undefined };
  };
  const v1Hosts = async (): Promise<Json[]> => (await v1("GET", "/hosts")).json as Json[];
  const v1Vm = async (hostId: string): Promise<Json | undefined> => ((await v1("GET", `/hosts/${hostId}/vms`)).json as Json[]).find((vm) => vm.name === domain.name);
  const domstate = (): Promise<string> => domain.state();
  const untilDomstate = (want: string, what: string): Promise<string> => until(async () => ((await domstate()) === want ? want : undefined), what, WAIT_MS, 250);

  before(async () => {
    await ensureLibvirtd();
    [sshd, domain] = await Promise.all([startSshd(), defineTestDomain({ start: true })]);
    sshUri = sshd.libvirtUri();
    controller = await TestController.create();
    await controller.start();
    ws = new WebSocket(`${controller.url.replace("http", "ws")}/ws`, { headers: { authorization: `Bearer ${controller.apiKey}` } });
    ws.on("message", (data) => messages.push(JSON.parse(data.toString()) as (typeof messages)[number]));
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
  });

  after(async () => {
    ws?.close();
    await controller?.dispose();
    await domain?.remove();
    await sshd?.stop();
    // Whatever happened above, libvirtd runs again for whoever uses it next.
    await ensureLibvirtd();
  });

  test("bad URIs and parameters that would run programs here are 400, naming the problem; nothing is stored", async () => {
    const cases: [unknown, RegExp][] = [
      [{ id: "x", uri: "qemu+ssh://root@127.0.0.1/system?command=/bin/sh" }, /parameter "command" is refused/],
      [{ id: "x", uri: "qemu+ssh://root@127.0.0.1/system?netcat=/tmp/nc" }, /parameter "netcat" is refused/],
      [{ id: "x", uri: "qemu+unix:///system?socket=/run/other.sock" }, /parameter "socket" is refused/],
      [{ id: "x", uri: "qemu+ssh://root@/system" }, /needs the remote machine/],
      [{ id: "x", uri: "xen:///system" }, /qemu driver only/],
      [{ id: "x", uri: "qemu:///elsewhere" }, /\/system or \/session/],
      [{ id: "x", uri: "qemu:///system", token: "secret" }, /takes no "token"/],
      [{ id: "x", addr: "127.0.0.1:22", uri: "qemu:///system" }, /"addr"/],
    ];
    for (const [body, message] of cases) {
      const answer = await controller.call<{ error: string; code: string }>("POST", "/api/hosts", body);
      assert.deepEqual([answer.status, answer.body.code], [400, "invalid_request"], JSON.stringify([body, answer.body]));
      assert.match(answer.body.error, message);
      // Virtumancer's body has no "addr" (its Go decoder ignores one): the rest is refused there alike.
      if ((body as { addr?: string }).addr !== undefined) continue;
      const v1Answer = await v1("POST", "/hosts", body);
      assert.equal(v1Answer.status, 400, `${JSON.stringify(body)}: ${v1Answer.text}`);
    }
    // A well-formed URI that nothing answers at: 502, and nothing stored (sshd's port, but no key for it).
    const unreachable = await controller.call<{ code: string; error: string }>("POST", "/api/hosts", {
      id: "nobody",
      uri: `qemu+ssh://root@127.0.0.1:${sshd.port}/system?keyfile=/nonexistent&no_verify=1`,
    });
    assert.deepEqual([unreachable.status, unreachable.body.code], [502, "host_unreachable"], JSON.stringify(unreachable.body));
    assert.deepEqual((await controller.call<Host[]>("GET", "/api/hosts")).body, [], "nothing stored");
  });

  test("qemu:///system added as Virtumancer adds a host, qemu+ssh:// as TTstack's clients do; both listed with their kind", async () => {
    const added = await v1("POST", "/hosts", { id: LOCAL, uri: "qemu:///system" });
    assert.equal(added.status, 201, added.text);
    wire.assertFits(wire.Host, added.json, "the added host");
    assert.deepEqual(added.json, { id: LOCAL, uri: "qemu:///system", state: "CONNECTED", task_state: "", auto_reconnect_disabled: false });

    const remote = await controller.call<Host>("POST", "/api/hosts", { id: REMOTE, uri: sshUri });
    assert.equal(remote.status, 201, JSON.stringify(remote.body));
    assert.deepEqual([remote.body.kind, remote.body.uri, remote.body.state, remote.body.addr], ["libvirt", sshUri, "online", `127.0.0.1:${sshd.port}`]);
    assert.equal((await controller.call("POST", "/api/hosts", { id: "again", uri: "qemu:///system" })).status, 409, "one registration per URI");

    const hosts = (await controller.call<Host[]>("GET", "/api/hosts")).body;
    assert.deepEqual(
      hosts.map((h) => [h.id, h.kind, h.state]),
      [
        [LOCAL, "libvirt", "online"],
        [REMOTE, "libvirt", "online"],
      ],
    );
    const local = hosts[0] as Host;
    const nodeMemKiB = Number(/Memory size:\s+(\d+) KiB/.exec(await virsh(["nodeinfo"]))?.[1]);
    assert.equal(local.resource.mem_total, Math.floor(nodeMemKiB / 1024), "the machine's memory in MiB");
    assert.ok(
      local.engines.every((e) => ["qemu", "firecracker", "bhyve", "docker", "jail"].includes(e)),
      JSON.stringify(local.engines),
    );
    for (const host of await v1Hosts()) wire.assertFits(wire.Host, host, "a host");
    const info = await v1("GET", `/hosts/${LOCAL}/info`);
    wire.assertFits(wire.HostInfo, info.json, "host info");
    assert.equal((info.json as Json).memory, local.resource.mem_total * 1024, "Virtumancer's memory in KiB");
  });

  test("the domain is listed with libvirt's units, through both URIs and both APIs", async () => {
    const expected = await dominfo(domain.name);
    const maxKiB = Number(/^(\d+) KiB$/.exec(expected["Max memory"] ?? "")?.[1]);
    for (const hostId of [LOCAL, REMOTE]) {
      const vm = await until(() => v1Vm(hostId), `the domain on ${hostId}`, WAIT_MS, 500);
      wire.assertFits(wire.VmListEntry, vm, "the domain");
      assert.deepEqual(
        [vm.state, vm.vcpu, vm.vcpu_count, vm.max_mem, vm.memory_bytes],
        [1, Number(expected["CPU(s)"]), Number(expected["CPU(s)"]), maxKiB, maxKiB * 1024],
        JSON.stringify(vm),
      );
      // libvirt tells no start time: the driver reads the local daemon's pid file; over ssh it is unknown (-1,
      // as Virtumancer shows a domain whose guest agent does not answer).
      if (hostId === LOCAL) assert.ok(typeof vm.uptime === "number" && vm.uptime >= 0, `a running domain has an uptime: ${JSON.stringify(vm)}`);
      else assert.ok(typeof vm.uptime === "number" && vm.uptime >= -1, JSON.stringify(vm));
      assert.equal(vm.uuid, expected.UUID, "libvirt's own UUID");
      // What Virtumancer's UI shows of it: nothing NaN, undefined or null.
      const uiHost: UiHost = { id: hostId, uri: "", vms: [vm], info: (await v1("GET", `/hosts/${hostId}/info`)).json as Json };
      const shown = [...datacenterCard(uiHost), ...hostDashboard(uiHost), ...vmSummary(vm)];
      assert.deepEqual(brokenText(shown), [], shown.join("\n"));
    }
    const seed = (await controller.call<Json[]>("GET", `/api/hosts/${LOCAL}/vms`)).body.find((vm) => vm.name === domain.name) as Json;
    assert.deepEqual([seed.state, seed.memory_bytes, seed.status], [1, maxKiB * 1024, "running"]);
  });

  test("hardware from the domain XML: the disk and the NIC", async () => {
    for (const hostId of [LOCAL, REMOTE]) {
      const answer = await v1("GET", `/hosts/${hostId}/vms/${domain.name}/hardware`);
      assert.equal(answer.status, 200, answer.text);
      wire.assertFits(wire.HardwareInfo, answer.json, "hardware");
      const hardware = answer.json as { disks: Json[]; networks: Json[] };
      assert.deepEqual(
        hardware.disks.map((d) => [d.path, (d.target as Json).dev, (d.target as Json).bus, (d.driver as Json).type]),
        [[domain.disk, "vda", "virtio", "qcow2"]],
      );
      assert.deepEqual(
        hardware.networks.map((n) => [n.type, (n.mac as Json).address, (n.model as Json).type]),
        [["user", TEST_MAC, "virtio"]],
      );
      assert.deepEqual(brokenText(hardwareTab(hardware)), []);
    }
    const seed = await controller.call<{ disks: Json[] }>("GET", `/api/hosts/${LOCAL}/vms/${domain.name}/hardware`);
    assert.equal(seed.body.disks[0]?.path, domain.disk);
  });

  test("/ws subscribers get vm-stats-updated from libvirt's domain stats", async () => {
    const since = messages.length;
    ws.send(JSON.stringify({ type: "subscribe-vm-stats", payload: { hostId: LOCAL, vmName: domain.name } }));
    const stats = await until(
      () => {
        const got = messages.slice(since).filter((m) => m.type === "vm-stats-updated" && m.payload?.vmName === domain.name);
        return got.length >= 2 ? got.map((m) => m.payload?.stats as Json) : undefined;
      },
      "two vm-stats-updated messages",
      WAIT_MS,
      250,
    );
    for (const message of messages.slice(since).filter((m) => m.type === "vm-stats-updated")) wire.assertFits(wire.VmStatsUpdated, message, "vm-stats-updated");
    const [first, second] = stats as [Json, Json];
    assert.equal(first.state, 1);
    assert.ok((second.cpu_time as number) >= (first.cpu_time as number) && (first.cpu_time as number) > 0, JSON.stringify(stats));
    ws.send(JSON.stringify({ type: "unsubscribe-vm-stats", payload: { hostId: LOCAL, vmName: domain.name } }));
  });

  test("the five power actions through /api/v1, seen in virsh domstate and the guest's boots; the seed's action route too", async () => {
    const power = async (hostId: string, action: string): Promise<void> => {
      const answer = await v1("POST", `/hosts/${hostId}/vms/${domain.name}/${action}`);
      assert.equal(answer.status, 204, `${action}: ${answer.text}`);
    };
    // The test guest powers off when ACPI's power button is pressed, once it listens to it.
    await domain.waitForBoots(1, WAIT_MS * 2);
    await power(LOCAL, "shutdown");
    await untilDomstate("shut off", "the guest shut down");
    assert.equal((await v1Vm(LOCAL))?.state, 5, "the list is refreshed at once");
    const refused = await v1("POST", `/hosts/${LOCAL}/vms/${domain.name}/shutdown`);
    assert.equal(refused.status, 409, `shutting down a domain that is off: ${refused.text}`);
    await power(REMOTE, "start");
    await untilDomstate("running", "the domain started through qemu+ssh");
    await domain.waitForBoots(2, WAIT_MS * 2);
    await power(LOCAL, "reboot");
    await domain.waitForBoots(3, WAIT_MS * 2);
    assert.equal(await domstate(), "running", "rebooted, not stopped");
    await power(REMOTE, "forcereset");
    await domain.waitForBoots(4, WAIT_MS * 2);
    await power(LOCAL, "forceoff");
    assert.equal(await domstate(), "shut off", "forced off at once");
    const seed = await controller.call("POST", `/api/hosts/${LOCAL}/vms/${domain.name}/action`, { action: "start" });
    assert.equal(seed.status, 204, JSON.stringify(seed.body));
    await untilDomstate("running", "the domain started through the seed's route");
    const unknown = await v1("POST", `/hosts/${LOCAL}/vms/no-such-domain/start`);
    assert.equal(unknown.status, 404, unknown.text);
  });

  test("what a libvirt host cannot do: environments (422, naming the kind), a VM's shell and serial log", async () => {
    const env = await controller.call<{ code: string; error: string }>("POST", "/api/envs", { id: "team", vms: [{ image: "base" }] });
    assert.deepEqual([env.status, env.body.code], [422, "no_capacity"], JSON.stringify(env.body));
    assert.match(env.body.error, /2 hosts are libvirt daemons, which take no environments/);
    const logs = await controller.call<{ code: string }>("GET", `/api/hosts/${LOCAL}/vms/${domain.name}/logs`);
    assert.equal(logs.body.code, "unsupported_by_host", JSON.stringify(logs.body));
    const shell = await openRefused({ url: controller.url }, `/api/hosts/${LOCAL}/vms/${domain.name}/shell?token=${controller.apiKey}`);
    assert.equal(shell.body.code, "unsupported_by_host", JSON.stringify(shell.body));
  });

  test("disconnect and connect as Virtumancer does", async () => {
    assert.equal((await v1("POST", `/hosts/${REMOTE}/disconnect`)).status, 204);
    assert.deepEqual(((await v1Hosts()).find((h) => h.id === REMOTE) as Json).state, "DISCONNECTED");
    assert.equal((await v1("POST", `/hosts/${REMOTE}/vms/${domain.name}/reboot`)).status, 409, "a disconnected host's VMs are left alone");
    assert.equal((await v1("POST", `/hosts/${REMOTE}/connect`)).status, 204);
    assert.deepEqual(((await v1Hosts()).find((h) => h.id === REMOTE) as Json).state, "CONNECTED");
  });

  test("the dashboard shows libvirt hosts with their kind and URI, the domain with its state, and its power buttons work", async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    const browser = await launchBrowser();
    try {
      const page = await browser.browser.newPage({ viewport: { width: 1280, height: 900 } });
      const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
      await page.goto(`${controller.url}/hosts`, { waitUntil: "load" });
      const dialog = page.getByRole("dialog", { name: "Sign in to this controller" });
      await dialog.getByLabel("API key").fill(controller.apiKey);
      await dialog.getByRole("button", { name: "Save" }).click();
      await dialog.waitFor({ state: "hidden" });
      const row = page.getByRole("row").filter({ has: page.getByRole("link", { name: LOCAL, exact: true }) });
      await row.getByText("libvirt daemon").waitFor();
      await row.getByText(/qemu:\/\/\/system/).waitFor();
      await row.getByText("online").waitFor();
      await shot("hosts");
      await row.getByRole("link", { name: LOCAL, exact: true }).click();
      const vmRow = page.getByRole("row").filter({ has: page.getByRole("link", { name: domain.name }) });
      await vmRow.getByText("running").waitFor({ timeout: WAIT_MS });
      await shot("host");
      await vmRow.getByRole("link", { name: domain.name }).click();
      await page.getByRole("heading", { name: "Terminal and log" }).waitFor();
      await page.getByRole("table", { name: "Disks" }).getByText(domain.disk).waitFor({ timeout: WAIT_MS });
      const powerGroup = page.getByRole("group", { name: "Power" });
      await powerGroup.getByRole("button", { name: "Force off" }).click();
      const confirm = page.getByRole("dialog", { name: "Force off this VM?" });
      await confirm.getByRole("button", { name: "Force off" }).click();
      await confirm.waitFor({ state: "hidden", timeout: WAIT_MS });
      await untilDomstate("shut off", "the domain forced off from the dashboard");
      await powerGroup.getByRole("button", { name: "Start", exact: true }).click();
      await untilDomstate("running", "the domain started from the dashboard");
      await powerGroup.getByRole("button", { name: "Reset" }).waitFor();
      await shot("vm");
    } finally {
      await browser.dispose();
    }
  });

  test("libvirtd killed: both hosts go offline with the reason; started again, they come back by themselves", async () => {
    const since = messages.length;
    await killLibvirtd();
    try {
      const offline = await until(
        async () => {
          const hosts = (await controller.call<Host[]>("GET", "/api/hosts")).body;
          return hosts.every((h) => h.state === "offline") ? hosts : undefined;
        },
        "both hosts offline",
        WAIT_MS,
        250,
      );
      for (const host of offline) assert.ok(host.last_error && host.last_error.length > 0, JSON.stringify(host));
      assert.deepEqual(
        (await v1Hosts()).map((h) => h.state),
        ["ERROR", "ERROR"],
      );
    } finally {
      await ensureLibvirtd();
    }
    await until(
      async () => ((await controller.call<Host[]>("GET", "/api/hosts")).body.every((h) => h.state === "online" && h.last_error === null) ? true : undefined),
      "both hosts online again",
      WAIT_MS,
      250,
    );
    assert.ok(
      messages.slice(since).some((m) => m.type === "hosts-changed"),
      "/ws clients were told",
    );
    assert.equal((await v1Vm(LOCAL))?.state, 1, "the domain kept running (QEMU outlives libvirtd)");
  });
});
