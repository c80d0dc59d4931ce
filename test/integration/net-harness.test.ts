// The namespace harness of the networking tests (test/helpers/netns.ts) proven on user-mode networking: a
// daemon started in a namespace the test made serves its API on a unix socket the test uses from its own
// namespace, boots a VM whose QEMU runs in that namespace, the guest reaches a listener in the "outside" peer
// namespace (and the peer's listener saw it), and teardown leaves no namespace, process or host link behind.
import assert from "node:assert/strict";
import { readlinkSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { run } from "../../src/util/run.ts";
import { qemuPids, TestDaemon } from "../helpers/daemon-process.ts";
import { guestProbe, namedNamespaces, PeerNetns, TestNetns, type NsListener } from "../helpers/netns.ts";

const CONFIG = `config:
  host_groups:
    - name: sbox
      image: base
      vcpu: 1
      ram_mb: 512
      template: false
`;

const isRoot = process.getuid?.() === 0;

async function hostLinkNames(): Promise<string[]> {
  return (JSON.parse(await run("ip", ["-j", "link", "show"])) as { ifname: string }[]).map((l) => l.ifname);
}

describe("the namespace harness, on user-mode networking", { timeout: 600_000, skip: isRoot ? false : "needs root (network namespaces)" }, () => {
  let ns: TestNetns;
  let peer: PeerNetns;
  let greeter: NsListener;
  let daemon: TestDaemon;
  let hostname: string;

  before(async () => {
    ns = await TestNetns.create();
    peer = await PeerNetns.create(ns);
    greeter = await peer.listen("peer-greeter");
    daemon = await TestDaemon.create(CONFIG, { netns: ns });
    await daemon.start();
    hostname = (await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "300s" })).hostname;
  });

  after(async () => {
    await ns?.dispose();
  });

  test("the daemon and its QEMU run in the test's namespace; the API answers on the socket", async () => {
    assert.match(daemon.url, /^unix:\//);
    const child = daemon.current.child.pid as number;
    assert.equal(readlinkSync(`/proc/${child}/ns/net`), `net:[${ns.inode}]`, "the daemon runs in the namespace");
    const pids = qemuPids(daemon.stateDir);
    assert.equal(pids.length, 1, `one QEMU: ${pids}`);
    assert.equal(readlinkSync(`/proc/${pids[0]}/ns/net`), `net:[${ns.inode}]`, "its QEMU too");
    assert.equal((await daemon.client.info()).host_isolation.state, "on");
    // The daemon's wall is in the namespace's nftables, not the host's.
    assert.ok((await ns.nftTables()).includes("inet corral_guard"), (await ns.nftTables()).join(", "));
    const raw = await daemon.request("GET", `/vm/${hostname}`);
    assert.equal(raw.status, 200, raw.text);
  });

  test("exec works and the guest reaches the peer namespace through the daemon's namespace", async () => {
    const echoed = await daemon.client.execBuffered(hostname, { cmd: "echo", args: ["hello"] });
    assert.equal(echoed.stdout.trim(), "hello");
    const before = greeter.connections;
    const result = await guestProbe(daemon.client, hostname, "tcp", peer.address, greeter.port);
    assert.deepEqual(result, { outcome: "open", data: "peer-greeter" });
    assert.equal(greeter.connections, before + 1);
    // User-mode NAT: the peer sees the daemon namespace's end of the link.
    assert.equal(greeter.peers.at(-1), peer.innerAddress);
    // The test's own namespace reaches the peer too (the link is up on both sides).
    assert.deepEqual(await ns.probe("tcp", peer.address, greeter.port), { outcome: "open", data: "peer-greeter" });
  });

  test("teardown leaves no namespace, process, QEMU or host link", async () => {
    const names = [ns.name, peer.ns.name];
    const inodes = [ns.inode, peer.ns.inode];
    const stateDir = daemon.stateDir;
    const linkIds = names.map((n) => n.slice(-6));
    await ns.dispose();
    assert.deepEqual(
      namedNamespaces().filter((n) => names.includes(n)),
      [],
    );
    assert.deepEqual(qemuPids(stateDir), []);
    assert.deepEqual(ns.pids(), [], "no process holds the test namespace");
    assert.deepEqual(peer.ns.pids(), [], "nor the peer's");
    for (const inode of inodes) assert.ok(inode > 0);
    const leftover = (await hostLinkNames()).filter((name) => linkIds.some((id) => name.includes(id)));
    assert.deepEqual(leftover, [], "the host's namespace got no link of ours");
  });
});
