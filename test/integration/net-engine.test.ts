// The go/no-go proof of the engine's TAP path, with real VMs: a template built on a detached TAP (QEMU in
// its own empty network namespace, no address), two clones restored from it onto TAPs on a bridge in a
// network namespace this test makes (10.213.0.1/24), and one VM booted cold on the same bridge. Driven
// through the engine's own startMachine and buildTemplate, with a test-local attachment standing in for
// part B's bridge attachment (QEMU spawned through `nsenter --net=…`, its TAP enslaved to the test's bridge
// while its vCPUs wait). Each clone must come up with its own MAC and address (told after the restore, its
// link raised only then), the clones must ping each other and the bridge, and the cold VM must take its
// address from the kernel command line. Nothing is sent outside the test's namespace.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { pino, type Logger } from "pino";
import { hostTscKhz, QEMU_BINARY, QemuEngine, type AccelVerdict, type Machine } from "../../src/engine/index.ts";
import { corralHome, createOverlay, createOverlayOn, ImageStore, type ImageVersion } from "../../src/image/index.ts";
import type { AttachmentProvider, AttachmentRequest, NetworkAttachment } from "../../src/net/attachment.ts";
import { DefaultAttachments } from "../../src/net/default-attachments.ts";
import type { GroupNetwork } from "../../src/net/network-config.ts";
import { AgentClient } from "../../src/daemon/agent/agent-client.ts";
import { collectExec } from "../../src/daemon/exec/collect-exec.ts";
import { buildTemplate, type TemplateMeta } from "../../src/daemon/templates/build-template.ts";
import { templatePaths } from "../../src/daemon/templates/template-paths.ts";
import { startMachine, type StartedMachine } from "../../src/daemon/vm/launch-vm.ts";
import { vmPaths } from "../../src/daemon/vm/vm-paths.ts";
import { guestNetworkIdentity, VmSupervisor } from "../../src/daemon/vm/vm-supervisor.ts";
import { VmStore } from "../../src/daemon/vm/vm-store.ts";
import { Admission } from "../../src/daemon/admission.ts";
import { parseDaemonConfig } from "../../src/daemon/config.ts";
import { RUNTIME_BUSYBOX } from "../../src/image/guest-runtime-scripts.ts";
import { Reverter } from "../../src/util/reverter.ts";

const run = promisify(execFile);
const root = process.getuid?.() === 0;
const MiB = 1024 * 1024;

const NS = `corral-t-eng${randomBytes(3).toString("hex")}`;
const BRIDGE = "br0";
const GATEWAY = "10.213.0.1";
const GROUP = "vm";
/** The group's network as part C's config would parse it; only its mode matters to the engine here. */
const BRIDGE_GROUP: GroupNetwork = {
  mode: "bridge",
  bridge: BRIDGE,
  tapPrefix: "vmtap",
  gateway: { address: 0x0ad50001, prefixLength: 24 },
  range: undefined,
  addresses: [],
  policy: { allow: [], drop: [] },
};

/** A TAP on the test namespace's bridge, as part B's bridge attachment makes one (minus leases and rules). */
function testBridgeAttachment(address: string, tap: string, mac: string): NetworkAttachment {
  return {
    mode: "bridge",
    guest: { address, prefixLength: 24, gateway: GATEWAY, dns: [GATEWAY], mac },
    netdev: { kind: "tap", ifname: tap, vhost: false },
    // nsenter execs QEMU like unshare does: the pid stays QEMU's, and its transient TAP is made in the test's namespace.
    launchPrefix: ["nsenter", `--net=/run/netns/${NS}`, "--"],
    needsPlumbing: true,
    plumb: async () => {
      await run("ip", ["-n", NS, "link", "set", tap, "master", BRIDGE, "up"]);
    },
    view: () => ({ mode: "bridge", mac, address, prefix_length: 24, gateway: GATEWAY, bridge: BRIDGE, target_dev: tap }),
  };
}

/** Opens a TCP connection from inside the test's namespace (a node child under nsenter). */
async function tcpAnswer(address: string, port: number): Promise<string> {
  const script =
    `const s=require("net").connect(${port},${JSON.stringify(address)});s.setTimeout(20000);` +
    `s.on("connect",()=>{console.log("answered");process.exit(0)});` +
    `s.on("error",(e)=>{console.log(e.code==="ECONNREFUSED"?"answered":e.code);process.exit(0)});` +
    `s.on("timeout",()=>{console.log("timeout");process.exit(0)});`;
  const { stdout } = await run("nsenter", [`--net=/run/netns/${NS}`, process.execPath, "-e", script]);
  return stdout.trim();
}

class TestProvider implements AttachmentProvider {
  private readonly base = new DefaultAttachments(() => ({ network: BRIDGE_GROUP }), "127.0.0.1");
  readonly planned = new Map<string, NetworkAttachment>();
  readonly templateAttachments: NetworkAttachment[] = [];

  async attachmentFor(request: AttachmentRequest): Promise<NetworkAttachment> {
    if (request.purpose === "template") {
      const attachment = await this.base.attachmentFor(request);
      this.templateAttachments.push(attachment);
      return attachment;
    }
    const planned = this.planned.get(request.hostname);
    if (!planned) throw new Error(`no attachment planned for ${request.hostname}`);
    return planned;
  }
}

const log = pino({ level: process.env.TEST_LOG ?? "silent" }) as unknown as Logger;
const accel: AccelVerdict = { accel: "tcg", mode: "tcg", reason: "test", decided_at: new Date().toISOString(), cached: false };

describe("engine on TAPs: template on a detached TAP, clones and a cold boot on a bridge", { skip: root ? false : "needs root (network namespaces, TAPs)" }, () => {
  const provider = new TestProvider();
  const machines: Machine[] = [];
  const agents: AgentClient[] = [];
  let stateDir = "";
  let image: ImageVersion;
  let template: TemplateMeta;
  const engine = new QemuEngine({ binary: QEMU_BINARY, accel });
  const deps = () => ({ stateDir, accel, tscKhz: hostTscKhz(), engine, guestGid: undefined, log, network: provider });

  // QemuProcess unrefs its children (a daemon's QEMUs outlive it): this timer keeps the test's loop alive.
  let keepAlive: NodeJS.Timeout | undefined;

  before(async () => {
    keepAlive = setInterval(() => undefined, 1000);
    await run("ip", ["netns", "add", NS]);
    await run("ip", ["-n", NS, "link", "set", "lo", "up"]);
    await run("ip", ["-n", NS, "link", "add", BRIDGE, "type", "bridge"]);
    await run("ip", ["-n", NS, "addr", "add", `${GATEWAY}/24`, "dev", BRIDGE]);
    await run("ip", ["-n", NS, "link", "set", BRIDGE, "up"]);
    stateDir = await mkdtemp(join(tmpdir(), "corral-net-engine-"));
    const images = new ImageStore(corralHome().images);
    image = await images.resolve("base");
  });

  after(async () => {
    for (const agent of agents) agent.close();
    for (const machine of machines) await machine.kill();
    await run("ip", ["netns", "del", NS]).catch(() => undefined);
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
    clearInterval(keepAlive);
  });

  /** Runs a busybox applet in the guest; resolves with its exit code and output. */
  async function guestRun(agent: AgentClient, args: string[]): Promise<{ exit: number; out: string }> {
    const signal = AbortSignal.timeout(120_000);
    const { stream: frames } = await agent.exec({ cmd: RUNTIME_BUSYBOX, args, env: [], stdin: false, stdio: "text" }, undefined, signal);
    const result = await collectExec(frames, "text");
    return { exit: result.exit_code, out: result.stdout + result.stderr };
  }

  function track(started: StartedMachine): StartedMachine {
    machines.push(started.machine);
    if (started.agent) agents.push(started.agent);
    return started;
  }

  test("the template is built on a TAP in QEMU's own namespace, with no address", { timeout: 15 * 60_000 }, async () => {
    template = await buildTemplate(
      deps(),
      { id: `t-${randomBytes(4).toString("hex")}-${randomBytes(3).toString("hex")}`, key: "net-engine-test", hostgroup: GROUP, image, cpus: 1, ramBytes: 512 * MiB },
      AbortSignal.timeout(14 * 60_000),
    );
    const [attachment] = provider.templateAttachments;
    assert.equal(attachment?.netdev.kind, "tap");
    assert.deepEqual(attachment?.launchPrefix, ["unshare", "--net", "--"]);
    assert.equal(attachment?.guest.address, "", "the template's guest is given no address");
  });

  const clones = [
    { hostname: "clone-a", address: "10.213.0.2", tap: "vmtap2", mac: "52:54:00:21:30:02" },
    { hostname: "clone-b", address: "10.213.0.3", tap: "vmtap3", mac: "52:54:00:21:30:03" },
  ];
  const cloneAgents = new Map<string, AgentClient>();

  test("two clones on the bridge take their own MAC and address after the restore", { timeout: 10 * 60_000 }, async () => {
    assert.ok(template, "the template was built");
    const paths = templatePaths(stateDir, template.id);
    for (const clone of clones) {
      const attachment = testBridgeAttachment(clone.address, clone.tap, clone.mac);
      provider.planned.set(clone.hostname, attachment);
      const vm = vmPaths(stateDir, clone.hostname);
      await mkdir(vm.dir, { recursive: true, mode: 0o700 });
      await createOverlayOn(paths.disk, "qcow2", vm.disk);
      const revert = new Reverter();
      const machine = { hostname: clone.hostname, mac: clone.mac, cpus: 1, ramBytes: 512 * MiB };
      const started = track(await startMachine(deps(), machine, vm, image, revert, { template: template.id, resumeFrom: paths.state, checkAgent: true, attachment }));
      revert.commit();
      assert.equal(started.machine.link, "down", "a state resumed on a TAP starts with its link down");
      const agent = started.agent as AgentClient;
      // What VmSupervisor's bring-up does: the identity with the NIC's address, then the link goes up.
      await agent.applyIdentity(
        { hostname: clone.hostname, mac: clone.mac, time_ms: Date.now(), entropy: randomBytes(64).toString("base64"), ...guestNetworkIdentity({ attachment }) },
        AbortSignal.timeout(120_000),
      );
      await started.machine.setLink(true);
      cloneAgents.set(clone.hostname, agent);
    }
    for (const clone of clones) {
      const agent = cloneAgents.get(clone.hostname) as AgentClient;
      const mac = await guestRun(agent, ["cat", "/sys/class/net/eth0/address"]);
      assert.equal(mac.out.trim(), clone.mac);
      const addr = await guestRun(agent, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
      assert.match(addr.out, new RegExp(`inet ${clone.address.replaceAll(".", "\\.")}/24 `));
      assert.equal(addr.out.match(/ inet /g)?.length, 1, `one address only: ${addr.out}`);
      const route = await guestRun(agent, ["ip", "route", "show", "default"]);
      assert.match(route.out, /default via 10\.213\.0\.1 dev eth0/);
      const resolv = await guestRun(agent, ["cat", "/etc/resolv.conf"]);
      assert.equal(resolv.out, `nameserver ${GATEWAY}\n`);
    }
    // Both TAPs are ports of the test's bridge, in the test's namespace only.
    const { stdout } = await run("ip", ["-n", NS, "-o", "link", "show", "master", BRIDGE]);
    for (const clone of clones) assert.match(stdout, new RegExp(`: ${clone.tap}[:@]`));
  });

  test("the clones ping each other and the bridge; the test's namespace pings both", { timeout: 5 * 60_000 }, async () => {
    assert.equal(cloneAgents.size, 2, "both clones are up");
    const [a, b] = clones as [(typeof clones)[0], (typeof clones)[0]];
    const agentA = cloneAgents.get(a.hostname) as AgentClient;
    const agentB = cloneAgents.get(b.hostname) as AgentClient;
    const aToB = await guestRun(agentA, ["ping", "-c", "3", "-W", "10", b.address]);
    assert.equal(aToB.exit, 0, aToB.out);
    const bToA = await guestRun(agentB, ["ping", "-c", "3", "-W", "10", a.address]);
    assert.equal(bToA.exit, 0, bToA.out);
    const aToGateway = await guestRun(agentA, ["ping", "-c", "3", "-W", "10", GATEWAY]);
    assert.equal(aToGateway.exit, 0, aToGateway.out);
    // The host has no ping: a TCP connection from the test's namespace is answered (accepted, or refused with a
    // reset) only by a guest that is reachable; an unreachable one times out or has no neighbour.
    for (const clone of clones) assert.equal(await tcpAnswer(clone.address, 22), "answered", `${clone.address} answers from the test's namespace`);
    // The bridge learnt each clone under its own MAC (not the template's).
    const { stdout: neighbours } = await run("nsenter", [`--net=/run/netns/${NS}`, "ip", "neigh", "show", "dev", BRIDGE]);
    for (const clone of clones) assert.match(neighbours, new RegExp(`${clone.address.replaceAll(".", "\\.")} lladdr ${clone.mac}`));
  });

  test("a clone launched by the VmSupervisor is told its address and gets its link raised by the bring-up", { timeout: 10 * 60_000 }, async () => {
    assert.ok(template, "the template was built");
    const config = parseDaemonConfig(
      `config:\n  host_groups:\n    - name: ${GROUP}\n      image: base\n      count: 0\n      vcpu: 1\n      ram_mb: 512\n      template: false\n`,
      "test",
    );
    const store = new VmStore(join(stateDir, "corral.db"));
    const supervisor = new VmSupervisor({
      stateDir,
      tscKhz: hostTscKhz(),
      config,
      store,
      images: new ImageStore(corralHome().images),
      accel,
      engine,
      log,
      guestGid: undefined,
      admission: new Admission({ config: config.admission, stateDir, activeInGroup: () => 0 }),
      network: provider,
    });
    const clone = { address: "10.213.0.5", tap: "vmtap5", mac: "52:54:00:21:30:05" };
    const record = store.insertNamed("sup-1", {
      hostgroup: GROUP,
      kind: "sandbox",
      cpus: 1,
      ramBytes: 512 * MiB,
      persistent: false,
      image: "base",
      imageVersion: image.version,
      userdata: null,
      sshKeys: [],
      importUser: null,
      tags: [],
      ip: clone.address,
      mac: clone.mac,
      accel: "tcg",
      machineId: randomBytes(16).toString("hex"),
    });
    provider.planned.set(record.hostname, testBridgeAttachment(clone.address, clone.tap, clone.mac));
    const paths = templatePaths(stateDir, template.id);
    try {
      await supervisor.lock.run(record.hostname, () =>
        supervisor.launch(record, { from: { kind: "template", template: template.id, disk: paths.disk, serialLog: paths.serialLog, state: paths.state } }),
      );
      const runtime = supervisor.runtime(record.hostname);
      assert.ok(runtime, "the supervisor took charge of the clone");
      machines.push(runtime.machine);
      assert.equal(runtime.attachment?.view().target_dev, clone.tap);
      await runtime.readiness.whenSettled;
      assert.equal(runtime.machine.link, "up", "the bring-up raised the link");
      const addr = await guestRun(runtime.agent, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
      assert.match(addr.out, /inet 10\.213\.0\.5\/24 /);
      const mac = await guestRun(runtime.agent, ["cat", "/sys/class/net/eth0/address"]);
      assert.equal(mac.out.trim(), clone.mac);
      const ping = await guestRun(runtime.agent, ["ping", "-c", "3", "-W", "10", GATEWAY]);
      assert.equal(ping.exit, 0, ping.out);
      assert.equal(await tcpAnswer(clone.address, 22), "answered");
    } finally {
      supervisor.stopping.abort();
      await supervisor.runtime(record.hostname)?.machine.kill();
      supervisor.runtime(record.hostname)?.dispose();
      store.close();
    }
  });

  test("a VM booted cold on the bridge takes its address from the kernel command line", { timeout: 15 * 60_000 }, async () => {
    const cold = { hostname: "cold-1", address: "10.213.0.4", tap: "vmtap4", mac: "52:54:00:21:30:04" };
    const attachment = testBridgeAttachment(cold.address, cold.tap, cold.mac);
    provider.planned.set(cold.hostname, attachment);
    const vm = vmPaths(stateDir, cold.hostname);
    await mkdir(vm.dir, { recursive: true, mode: 0o700 });
    await createOverlay(image, vm.disk);
    const revert = new Reverter();
    const started = track(
      await startMachine(deps(), { hostname: cold.hostname, mac: cold.mac, cpus: 1, ramBytes: 512 * MiB }, vm, image, revert, { template: null, checkAgent: false, attachment }),
    );
    revert.commit();
    assert.equal(started.machine.link, "up");
    const agent = new AgentClient(vm.agentSocket);
    agents.push(agent);
    await agent.waitForConnection(AbortSignal.timeout(12 * 60_000), () => started.machine.running);
    // No network in the identity: what the guest has came from corral.ip/gw/dns.
    await agent.applyIdentity({ hostname: cold.hostname, mac: cold.mac, time_ms: Date.now() }, AbortSignal.timeout(120_000));
    const addr = await guestRun(agent, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
    assert.match(addr.out, /inet 10\.213\.0\.4\/24 /);
    const resolv = await guestRun(agent, ["cat", "/etc/resolv.conf"]);
    assert.equal(resolv.out, `nameserver ${GATEWAY}\n`);
    const ping = await guestRun(agent, ["ping", "-c", "3", "-W", "10", GATEWAY]);
    assert.equal(ping.exit, 0, ping.out);
    if (cloneAgents.size > 0) {
      const toClone = await guestRun(agent, ["ping", "-c", "3", "-W", "10", "10.213.0.2"]);
      assert.equal(toClone.exit, 0, toClone.out);
    }
  });
});
