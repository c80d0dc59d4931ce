// TTstack's port maps and deny_outgoing on a bridge (issue 14, plan §5 I3): `POST /api/vms` with `ports` and
// `deny_outgoing` in a `ttstack` host group in bridge mode, in a namespace this test made. The VM gets its own
// address; a server in the guest on port 8080 answers the outside peer through the daemon namespace's
// address and the mapped host port (DNAT), and the daemon's namespace through 127.0.0.1:host_port, while the
// guest's own new connection to the peer is dropped: deny_outgoing blocks what the VM opens, not the answers
// on its mapped ports (TTstack's drop-everything denylist would kill both).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { AgentVm } from "../../src/protocol/ttstack-agent.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";
import { parseProbe, reached, REACH_PROBE } from "../helpers/reach.ts";
import { describeNetwork, guestProbe, PeerNetns, TestNetns, type NsListener } from "../helpers/netns.ts";
import { until } from "../helpers/until.ts";

const GUEST_PORT = 8080;
const CONFIG = `config:
  network:
    port_range: "21000-21099"
  host_groups:
    - name: ttstack
      image: base
      vcpu: 1
      ram_mb: 512
      template: false
      network:
        gateway: 10.141.3.1/24
`;

const GUEST_SERVER = `require("net").createServer((s) => { s.on("error", () => {}); s.end("guest-${GUEST_PORT}\\n"); }).listen(${GUEST_PORT}, () => console.log("listening"));`;

const isRoot = process.getuid?.() === 0;

describe("TTstack's port maps and deny_outgoing on a bridge", { timeout: 600_000, skip: isRoot ? false : "needs root (network namespaces, bridges, TAPs)" }, () => {
  let ns: TestNetns;
  let peer: PeerNetns;
  let outside: NsListener;
  let daemon: TestDaemon;
  let vm: AgentVm;

  before(async () => {
    ns = await TestNetns.create();
    peer = await PeerNetns.create(ns);
    outside = await peer.listen("outside");
    daemon = await TestDaemon.create(CONFIG, { netns: ns });
    await daemon.start();
    const created = await daemon.request("POST", "/api/vms", { vm_id: "tt-1", image: "base", cpu: 1, mem: 512, ports: [GUEST_PORT], deny_outgoing: true });
    assert.equal(created.status, 201, created.text);
    vm = (created.body as { data: { vm: AgentVm } }).data.vm;
    await until(async () => ((await daemon.request("GET", "/api/vms/tt-1")).body as { data?: AgentVm }).data?.status === "running" || undefined, "tt-1 to run", 300_000, 500);
    // The agent answers once the guest has booted; then the guest's server starts in the background.
    await until(
      async () =>
        await daemon.client
          .execBuffered("tt-1", { cmd: "true" })
          .then(() => true)
          .catch(() => undefined),
      "tt-1's agent",
      300_000,
      1000,
    );
    await daemon.client.bg.exec("tt-1", { cmd: "node", args: ["-e", GUEST_SERVER] });
    await until(async () => ((await guestProbe(daemon.client, "tt-1", "tcp", "127.0.0.1", GUEST_PORT)).outcome === "open" ? true : undefined), "the guest's server", 60_000, 500);
  });

  after(async () => {
    if (daemon) process.stderr.write(`net-policy: the daemon's log ends with:\n${daemon.log.split("\n").slice(-15).join("\n")}\n`);
    await ns?.dispose();
  });

  test("the VM has its own address on the bridge and host ports from config.network.port_range", async () => {
    assert.match(vm.ip, /^10\.141\.3\.\d+$/);
    assert.notEqual(vm.ip, "10.141.3.1");
    assert.deepEqual(Object.keys(vm.port_map).sort(), ["22", String(GUEST_PORT)]);
    for (const port of Object.values(vm.port_map)) assert.ok(port >= 21000 && port <= 21099, `host port ${port}`);
    assert.equal(vm.deny_outgoing, true);
    const network = await describeNetwork(daemon, "tt-1");
    assert.equal(network.mode, "bridge");
    assert.equal(network.deny_outgoing, true);
    assert.deepEqual(network.port_map, vm.port_map);
  });

  test("the guest's new connection to the outside is dropped", async () => {
    const result = await guestProbe(daemon.client, "tt-1", "tcp", peer.address, outside.port);
    assert.ok(!reached(result), JSON.stringify(result));
    assert.equal(outside.connections, 0);
  });

  test("the outside reaches the guest's server at the daemon namespace's address and the mapped port", async () => {
    const hostPort = vm.port_map[String(GUEST_PORT)] as number;
    const result = parseProbe(await peer.ns.run(process.execPath, ["-e", REACH_PROBE, "tcp", peer.innerAddress, String(hostPort)]));
    assert.deepEqual(result, { outcome: "open", data: `guest-${GUEST_PORT}` });
    // Port 22 too (TTstack's first map): the guest's SSH server.
    const ssh = parseProbe(await peer.ns.run(process.execPath, ["-e", REACH_PROBE, "tcp", peer.innerAddress, String(vm.port_map["22"])]));
    assert.equal(ssh.outcome, "open");
    assert.match(ssh.data ?? "", /^SSH-2\.0-/);
  });

  test("the daemon's namespace reaches it through 127.0.0.1:host_port and the VM's own address", async () => {
    const hostPort = vm.port_map[String(GUEST_PORT)] as number;
    assert.deepEqual(await ns.probe("tcp", "127.0.0.1", hostPort), { outcome: "open", data: `guest-${GUEST_PORT}` });
    assert.deepEqual(await ns.probe("tcp", vm.ip, GUEST_PORT), { outcome: "open", data: `guest-${GUEST_PORT}` });
  });

  test("PATCH deny_outgoing: false lets the guest out; the port maps keep answering", async () => {
    const answer = await daemon.request("PATCH", "/vm/tt-1/network", { deny_outgoing: false });
    assert.equal(answer.status, 200, answer.text);
    assert.deepEqual(await guestProbe(daemon.client, "tt-1", "tcp", peer.address, outside.port), { outcome: "open", data: "outside" });
    const hostPort = vm.port_map[String(GUEST_PORT)] as number;
    assert.deepEqual(await ns.probe("tcp", "127.0.0.1", hostPort), { outcome: "open", data: `guest-${GUEST_PORT}` });
  });

  test("deleting the VM frees its host ports: nothing answers there any more", async () => {
    const hostPort = vm.port_map[String(GUEST_PORT)] as number;
    const deleted = await daemon.request("DELETE", "/api/vms/tt-1");
    assert.ok(deleted.status < 300, deleted.text);
    assert.ok(!reached(await ns.probe("tcp", "127.0.0.1", hostPort)));
  });
});
