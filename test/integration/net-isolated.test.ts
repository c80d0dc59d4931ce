// Isolated mode as Slicer defines it (issue 14, plan §5 I2 and I4's isolated part): each VM in a network
// namespace of its own behind a veth, a /30 block of the group's range, `drop`/`allow` lists where the more
// specific entry wins. Two clones reach neither each other nor the daemon's namespace (their "host"); a
// dropped network and a dropped port are refused while the allowed ADDRESS:PORT answers (listeners in the
// outside peer namespace); a create-time override like the Slicer SDK's shows in GET /vm/HOST as the Go
// SDK's cold-fork example expects, and so does a fork's (with its own /30 and MAC after the restore);
// PATCH /vm/HOST/network flips the verdicts of a running VM and back; after
// kill -9 of the daemon and a restart the VMs keep their addresses and their policy.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { VmNetworkDescription } from "../../src/protocol/net.ts";
import { qemuPids, TestDaemon } from "../helpers/daemon-process.ts";
import { reached } from "../helpers/reach.ts";
import { describeNetwork, guestInterface, guestPing, guestProbe, PeerNetns, templateReady, TestNetns, type NsListener } from "../helpers/netns.ts";

/** A network out there that the group drops whole. */
const DROPPED_ADDRESS = "198.18.1.2";
const PORT_A = 18091;
const PORT_B = 18092;
const HOST_PORT = 18093;
const HOST_GROUP_POLICY = { allow: [`${PeerNetns.ADDRESS}:${PORT_B}`], drop: ["198.18.0.0/15"] };

const CONFIG = `config:
  host_groups:
    - name: sandbox
      image: base
      vcpu: 1
      ram_mb: 512
      network:
        mode: isolated
        range: 169.254.120.0/22
        drop: ${JSON.stringify(HOST_GROUP_POLICY.drop)}
        allow: ${JSON.stringify(HOST_GROUP_POLICY.allow)}
`;

const isRoot = process.getuid?.() === 0;

/** The address before this one (an isolated VM's gateway is the first address of its /30). */
function previous(address: string): string {
  const parts = address.split(".").map(Number);
  parts[3] = (parts[3] as number) - 1;
  return parts.join(".");
}

describe("isolated mode: a namespace per VM, Slicer's drop/allow lists, changed at runtime", {
  timeout: 900_000,
  skip: isRoot ? false : "needs root (network namespaces, veths, TAPs)",
}, () => {
  let ns: TestNetns;
  let peer: PeerNetns;
  let daemon: TestDaemon;
  const vms: { hostname: string; ip: string; mac: string }[] = [];
  const listeners: { a?: NsListener; b?: NsListener; dropped?: NsListener; host?: NsListener } = {};

  /** Which of the three outside listeners the guest reaches, probed at once (a drop waits out its deadline). */
  const verdicts = async (hostname: string): Promise<{ dropped: boolean; a: boolean; b: boolean }> => {
    const [dropped, a, b] = await Promise.all([
      guestProbe(daemon.client, hostname, "tcp", DROPPED_ADDRESS, PORT_A),
      guestProbe(daemon.client, hostname, "tcp", PeerNetns.ADDRESS, PORT_A),
      guestProbe(daemon.client, hostname, "tcp", PeerNetns.ADDRESS, PORT_B),
    ]);
    return { dropped: reached(dropped), a: reached(a), b: reached(b) };
  };

  const patch = async (hostname: string, body: unknown): Promise<VmNetworkDescription> => {
    const answer = await daemon.request("PATCH", `/vm/${hostname}/network`, body);
    assert.equal(answer.status, 200, answer.text);
    return answer.body as VmNetworkDescription;
  };

  before(async () => {
    ns = await TestNetns.create();
    peer = await PeerNetns.create(ns);
    await peer.addAddress(DROPPED_ADDRESS);
    listeners.a = await peer.listen("A", PORT_A);
    listeners.b = await peer.listen("B", PORT_B);
    listeners.dropped = await peer.listen("dropped", PORT_A, DROPPED_ADDRESS);
    listeners.host = await ns.listen("host", "0.0.0.0", HOST_PORT);
    daemon = await TestDaemon.create(CONFIG, { netns: ns });
    await daemon.start();
    await templateReady(daemon, "sandbox");
    // The second with the Slicer SDK's create-time override: `allow: []` clears the group's allow list.
    for (const body of [{}, { network: { allow: [] } }]) {
      const created = await daemon.client.createNode("sandbox", body, { wait: "agent", timeout: "300s" });
      const network = await describeNetwork(daemon, created.hostname);
      vms.push({ hostname: created.hostname, ip: created.ip, mac: network.interface.mac });
    }
  });

  after(async () => {
    if (daemon) process.stderr.write(`net-isolated: the daemon's log ends with:\n${daemon.log.split("\n").slice(-15).join("\n")}\n`);
    await ns?.dispose();
  });

  test("each VM has a /30 block of the range (its address, the block's gateway), a veth in the daemon's namespace and its own MAC", async () => {
    const links = await ns.links();
    for (const vm of vms) {
      assert.match(vm.ip, /^169\.254\.12[0-3]\.\d+$/);
      const network = await describeNetwork(daemon, vm.hostname);
      assert.equal(network.mode, "isolated");
      assert.equal(network.interface.prefix_length, 30);
      assert.equal(network.interface.gateway, previous(vm.ip));
      assert.equal(network.interface.bridge, null);
      const veth = links.find((l) => l.ifname === network.interface.target_dev);
      assert.equal(veth?.kind, "veth", `the host end ${network.interface.target_dev}: ${JSON.stringify(links.map((l) => l.ifname))}`);
      const seen = await guestInterface(daemon.client, vm.hostname);
      assert.equal(seen.address, `${vm.ip}/30`);
      assert.equal(seen.mac, vm.mac);
    }
    assert.equal(vms[0]?.ip, "169.254.120.2", "the first block's VM address, as in Slicer");
    assert.notEqual(vms[0]?.mac, vms[1]?.mac);
    assert.notEqual(vms[0]?.ip, vms[1]?.ip);
    // No QEMU of an isolated VM runs in the daemon's namespace: each has its own.
    for (const pid of qemuPids(daemon.stateDir)) assert.ok(!ns.pids().includes(pid), `QEMU ${pid} has a namespace of its own`);
  });

  test("the VMs reach neither each other nor the daemon's namespace, which reaches them on no port", async () => {
    const [a, b] = vms as [(typeof vms)[0], (typeof vms)[0]];
    const [ping, ssh, host, hostByPeerLink, fromHost] = await Promise.all([
      guestPing(daemon.client, a.hostname, b.ip),
      guestProbe(daemon.client, a.hostname, "tcp", b.ip, 22).then(reached),
      guestProbe(daemon.client, a.hostname, "tcp", previous(a.ip), HOST_PORT).then(reached),
      guestProbe(daemon.client, a.hostname, "tcp", peer.innerAddress, HOST_PORT).then(reached),
      ns.probe("tcp", a.ip, 22).then(reached),
    ]);
    const results = { ping, ssh, host, hostByPeerLink, fromHost };
    assert.deepEqual(results, { ping: false, ssh: false, host: false, hostByPeerLink: false, fromHost: false });
    assert.equal(listeners.host?.connections, 0);
  });

  test("the group's lists: a dropped network and port refused, the allowed ADDRESS:PORT answers", async () => {
    assert.deepEqual(await verdicts(vms[0]?.hostname as string), { dropped: false, a: false, b: true });
    assert.equal(listeners.b?.peers.at(-1), peer.innerAddress, "NAT'd behind the daemon namespace's address");
    assert.equal(listeners.a?.connections, 0);
    assert.equal(listeners.dropped?.connections, 0);
  });

  test("a create-time override (`allow: []`) shows as the Go SDK's cold-fork example expects, and applies", async () => {
    const network = await describeNetwork(daemon, vms[1]?.hostname as string);
    assert.equal(network.policy_source, "override");
    assert.deepEqual(network.override, { allow: [] });
    assert.deepEqual(network.host_group, HOST_GROUP_POLICY);
    assert.deepEqual(network.effective, { allow: [], drop: HOST_GROUP_POLICY.drop });
    assert.equal((await describeNetwork(daemon, vms[0]?.hostname as string)).policy_source, "host_group");
    assert.deepEqual(await verdicts(vms[1]?.hostname as string), { dropped: false, a: false, b: false });
  });

  test("PATCH /vm/HOST/network flips the verdicts of a running VM, and null goes back to the group's lists", async () => {
    const hostname = vms[0]?.hostname as string;
    const flipped = await patch(hostname, { allow: [`${DROPPED_ADDRESS}:${PORT_A}`], drop: [`${PeerNetns.ADDRESS}/32`] });
    assert.equal(flipped.policy_source, "override");
    assert.deepEqual(flipped.effective, { allow: [`${DROPPED_ADDRESS}:${PORT_A}`], drop: [`${PeerNetns.ADDRESS}/32`] });
    assert.deepEqual(await verdicts(hostname), { dropped: true, a: false, b: false });

    const back = await patch(hostname, { allow: null, drop: null });
    assert.equal(back.policy_source, "host_group");
    assert.deepEqual(back.effective, HOST_GROUP_POLICY);
    assert.deepEqual(await verdicts(hostname), { dropped: false, a: false, b: true });

    // deny_outgoing: no new connection at all, then open again.
    assert.equal((await patch(hostname, { deny_outgoing: true })).deny_outgoing, true);
    assert.deepEqual(await verdicts(hostname), { dropped: false, a: false, b: false });
    assert.equal((await patch(hostname, { deny_outgoing: false })).deny_outgoing, false);
    assert.equal(reached(await guestProbe(daemon.client, hostname, "tcp", PeerNetns.ADDRESS, PORT_B)), true);
  });

  test("PATCH refuses a bad entry naming the field, and an unknown VM", async () => {
    const bad = await daemon.request("PATCH", `/vm/${vms[0]?.hostname}/network`, { allow: ["198.18.0.2", "not-an-address"] });
    assert.equal(bad.status, 400, bad.text);
    assert.equal((bad.body as { code: string }).code, "invalid_request");
    assert.match((bad.body as { error: string }).error, /network\.allow\[1\]|allow\[1\]/);
    const unknown = await daemon.request("PATCH", "/vm/no-such-vm/network", { drop: [] });
    assert.equal(unknown.status, 404, unknown.text);
    // Nothing changed for the VM.
    assert.equal((await describeNetwork(daemon, vms[0]?.hostname as string)).policy_source, "host_group");
  });

  test("a fork of a memory commit takes its own /30 and MAC, and Slicer's fork-time policy (`allow: []`)", async () => {
    const source = vms[0]?.hostname as string;
    const committed = await daemon.request("POST", `/vm/${source}/commit`, { memory: true });
    assert.equal(committed.status, 201, committed.text);
    const commitId = (committed.body as { commit_id: string }).commit_id;
    const forked = await daemon.request("POST", `/vm/commits/${commitId}/fork?wait=agent&timeout=300s`, { network: { allow: [] } });
    assert.equal(forked.status, 201, forked.text);
    const fork = forked.body as { hostname: string; ip: string };
    try {
      const network = await describeNetwork(daemon, fork.hostname);
      assert.equal(network.policy_source, "override");
      assert.deepEqual(network.override, { allow: [] });
      assert.deepEqual(network.effective, { allow: [], drop: HOST_GROUP_POLICY.drop });
      assert.ok(!vms.some((vm) => vm.ip === fork.ip || vm.mac === network.interface.mac), `the fork has its own address and MAC: ${JSON.stringify(network.interface)}`);
      const nic = await guestInterface(daemon.client, fork.hostname);
      assert.equal(nic.address, `${fork.ip}/30`, "the restored guest took the fork's address");
      assert.equal(nic.mac, network.interface.mac);
      // The source's allowed ADDRESS:PORT is closed to the fork: its own lists are in force.
      assert.deepEqual(await verdicts(fork.hostname), { dropped: false, a: false, b: false });
    } finally {
      await daemon.request("DELETE", `/hostgroup/sandbox/nodes/${fork.hostname}`);
      await daemon.request("DELETE", `/vm/commits/${commitId}`);
    }
  });

  test("kill -9 of the daemon, restart: same addresses and MACs, the policies still hold", async () => {
    const hostname = vms[0]?.hostname as string;
    await patch(hostname, { allow: [`${DROPPED_ADDRESS}:${PORT_A}`] });
    const pidsBefore = qemuPids(daemon.stateDir).sort();
    await daemon.kill9();
    await daemon.start();
    assert.deepEqual(qemuPids(daemon.stateDir).sort(), pidsBefore);
    for (const vm of vms) {
      const network = await describeNetwork(daemon, vm.hostname);
      assert.equal(network.interface.address, vm.ip);
      assert.equal(network.interface.mac, vm.mac);
    }
    const network = await describeNetwork(daemon, hostname);
    assert.deepEqual(network.override, { allow: [`${DROPPED_ADDRESS}:${PORT_A}`] });
    // The override's allow list with the group's drop list: the dropped network's port A is more specific.
    assert.deepEqual(await verdicts(hostname), { dropped: true, a: false, b: false });
    const [second, ping] = await Promise.all([verdicts(vms[1]?.hostname as string), guestPing(daemon.client, vms[0]?.hostname as string, vms[1]?.ip as string)]);
    assert.deepEqual(second, { dropped: false, a: false, b: false });
    assert.equal(ping, false);
  });
});
