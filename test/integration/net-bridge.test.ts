// Bridge mode as a Slicer user configures it (issue 14, plan §5 I1 and I4's bridge part): a daemon in a
// namespace this test made, a host group with `network: {bridge, gateway}`, two clones of its template. Each
// clone gets its own address (the first is .2, as in Slicer) and MAC, both guests ping each other and the
// gateway, the test's namespace (the daemon's "host") pings both, the guest reaches the outside peer through
// the bridge's NAT, the wall refuses a host service while a `host_access` one answers, and after kill -9 of
// the daemon and a restart the VMs keep their addresses and MACs, reach each other again, the host tables say
// the same and no lease was given twice.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { qemuPids, TestDaemon } from "../helpers/daemon-process.ts";
import { reached } from "../helpers/reach.ts";
import { describeNetwork, guestInterface, guestPing, guestProbe, netTableName, nftSummary, PeerNetns, templateReady, TestNetns, type NsListener } from "../helpers/netns.ts";

const BRIDGE = "brnet0";
const GATEWAY = "10.140.7.1";
const ALLOWED_PORT = 18081;
const WALLED_PORT = 18082;

const CONFIG = `config:
  network:
    host_access: ["tcp/${ALLOWED_PORT}"]
  host_groups:
    - name: vm
      image: base
      vcpu: 1
      ram_mb: 512
      dns_servers: ["${GATEWAY}"]
      network:
        bridge: ${BRIDGE}
        tap_prefix: vmtap
        gateway: ${GATEWAY}/24
`;

const isRoot = process.getuid?.() === 0;

describe("bridge mode: an address per VM on the group's bridge", { timeout: 900_000, skip: isRoot ? false : "needs root (network namespaces, bridges, TAPs)" }, () => {
  let ns: TestNetns;
  let peer: PeerNetns;
  let daemon: TestDaemon;
  const vms: { hostname: string; ip: string; mac: string }[] = [];
  const listeners: { allowed?: NsListener; walled?: NsListener; outside?: NsListener } = {};

  before(async () => {
    ns = await TestNetns.create();
    peer = await PeerNetns.create(ns);
    listeners.outside = await peer.listen("outside");
    listeners.allowed = await ns.listen("allowed", "0.0.0.0", ALLOWED_PORT);
    listeners.walled = await ns.listen("walled", "0.0.0.0", WALLED_PORT);
    daemon = await TestDaemon.create(CONFIG, { netns: ns });
    await daemon.start();
    await templateReady(daemon, "vm");
    for (let i = 0; i < 2; i++) {
      const created = await daemon.client.createNode("vm", {}, { wait: "agent", timeout: "300s" });
      const network = await describeNetwork(daemon, created.hostname);
      vms.push({ hostname: created.hostname, ip: created.ip, mac: network.interface.mac });
    }
  });

  after(async () => {
    if (daemon) process.stderr.write(`net-bridge: the daemon's log ends with:\n${daemon.log.split("\n").slice(-15).join("\n")}\n`);
    await ns?.dispose();
  });

  test("two clones: distinct addresses from the gateway's subnet (.2 first) and distinct MACs, as the guests see them", async () => {
    const [a, b] = vms as [(typeof vms)[0], (typeof vms)[0]];
    assert.deepEqual([a.ip, b.ip].sort(), ["10.140.7.2", "10.140.7.3"]);
    assert.notEqual(a.mac, b.mac);
    const links = await ns.links();
    for (const vm of vms) {
      const network = await describeNetwork(daemon, vm.hostname);
      assert.equal(network.mode, "bridge");
      assert.equal(network.interface.mode, "bridge");
      assert.equal(network.interface.address, vm.ip);
      assert.equal(network.interface.prefix_length, 24);
      assert.equal(network.interface.gateway, GATEWAY);
      assert.equal(network.interface.bridge, BRIDGE);
      assert.match(network.interface.target_dev ?? "", /^vmtap\d+$/);
      const tap = links.find((l) => l.ifname === network.interface.target_dev);
      assert.equal(tap?.master, BRIDGE, `the TAP ${network.interface.target_dev} is a port of ${BRIDGE}: ${JSON.stringify(tap)}`);
      // The guest itself: a clone of one template, yet its own address and MAC.
      const seen = await guestInterface(daemon.client, vm.hostname);
      assert.equal(seen.address, `${vm.ip}/24`, `${vm.hostname}'s eth0`);
      assert.equal(seen.mac, vm.mac, `${vm.hostname}'s MAC`);
    }
  });

  test("the guests ping each other and the gateway; the daemon's namespace pings both", async () => {
    const [a, b] = vms as [(typeof vms)[0], (typeof vms)[0]];
    assert.ok(await guestPing(daemon.client, a.hostname, b.ip), `${a.hostname} pings ${b.ip}`);
    assert.ok(await guestPing(daemon.client, b.hostname, a.ip), `${b.hostname} pings ${a.ip}`);
    for (const vm of vms) assert.ok(await guestPing(daemon.client, vm.hostname, GATEWAY), `${vm.hostname} pings the gateway`);
    for (const vm of vms) assert.ok(await ns.ping(vm.ip), `the host pings ${vm.ip}`);
  });

  test("a guest's TCP reaches the other VM and the outside (NAT'd), not a walled host service; host_access answers", async () => {
    const [a, b] = vms as [(typeof vms)[0], (typeof vms)[0]];
    const ssh = await guestProbe(daemon.client, a.hostname, "tcp", b.ip, 22);
    assert.equal(ssh.outcome, "open", `${a.hostname} -> ${b.ip}:22: ${JSON.stringify(ssh)}`);
    assert.match(ssh.data ?? "", /^SSH-2\.0-/);

    const before = listeners.outside?.connections ?? 0;
    assert.deepEqual(await guestProbe(daemon.client, a.hostname, "tcp", peer.address, listeners.outside?.port as number), { outcome: "open", data: "outside" });
    assert.equal(listeners.outside?.connections, before + 1);
    assert.equal(listeners.outside?.peers.at(-1), peer.innerAddress, "masqueraded behind the daemon namespace's address");

    const walled = await guestProbe(daemon.client, a.hostname, "tcp", GATEWAY, WALLED_PORT);
    assert.equal(walled.outcome, "refused", `the wall: ${JSON.stringify(walled)}`);
    assert.equal(listeners.walled?.connections, 0);
    assert.deepEqual(await guestProbe(daemon.client, a.hostname, "tcp", GATEWAY, ALLOWED_PORT), { outcome: "open", data: "allowed" });
    // The same services answer the daemon's namespace itself: what the guest is refused is the wall's doing.
    assert.deepEqual(await ns.probe("tcp", GATEWAY, WALLED_PORT), { outcome: "open", data: "walled" });
  });

  test("GET /hostgroup shows the bridge group and its free addresses", async () => {
    const answer = await daemon.request("GET", "/hostgroup");
    assert.equal(answer.status, 200, answer.text);
    const group = (answer.body as { name: string; network?: { mode: string; state: string; bridge?: string; free_addresses?: number } }[]).find((g) => g.name === "vm");
    assert.equal(group?.network?.mode, "bridge", answer.text);
    assert.equal(group?.network?.state, "ready", answer.text);
    assert.equal(group?.network?.bridge, BRIDGE);
    // 10.140.7.0/24: 253 addresses besides the gateway, two leased.
    assert.equal(group?.network?.free_addresses, 251);
  });

  test("kill -9 of the daemon, restart: same addresses and MACs, reachable again, same host tables, no lease twice", async () => {
    const table = await netTableName(ns);
    assert.ok(table, `the daemon's host table: ${(await ns.nftTables()).join(", ")}`);
    const tablesBefore = await nftSummary(ns, "inet", table);
    const bridgeTable = await netTableName(ns, "bridge", "corral_br_");
    const bridgeBefore = bridgeTable ? await nftSummary(ns, "bridge", bridgeTable) : undefined;
    const pidsBefore = qemuPids(daemon.stateDir).sort();

    await daemon.kill9();
    await daemon.start();

    assert.deepEqual(qemuPids(daemon.stateDir).sort(), pidsBefore, "the VMs' QEMUs lived on and were re-attached");
    for (const vm of vms) {
      const network = await describeNetwork(daemon, vm.hostname);
      assert.equal(network.interface.address, vm.ip);
      assert.equal(network.interface.mac, vm.mac);
    }
    assert.deepEqual(await nftSummary(ns, "inet", table), tablesBefore);
    if (bridgeTable) assert.deepEqual(await nftSummary(ns, "bridge", bridgeTable), bridgeBefore);
    const [a, b] = vms as [(typeof vms)[0], (typeof vms)[0]];
    assert.ok(await guestPing(daemon.client, a.hostname, b.ip), `${a.hostname} pings ${b.ip} after the restart`);
    for (const vm of vms) assert.ok(await ns.ping(vm.ip), `the host pings ${vm.ip} after the restart`);
    assert.equal((await guestProbe(daemon.client, a.hostname, "tcp", GATEWAY, WALLED_PORT)).outcome, "refused", "the wall stands after the restart");

    // A third VM gets a new address: the two leases survived the restart.
    const third = await daemon.client.createNode("vm", {}, { wait: "agent", timeout: "300s" });
    assert.ok(!vms.some((vm) => vm.ip === third.ip), `${third.ip} is not given twice`);
    assert.match(third.ip, /^10\.140\.7\.\d+$/);
    assert.ok(!reached(await guestProbe(daemon.client, third.hostname, "tcp", GATEWAY, WALLED_PORT)), "the new VM is walled too");
  });
});
