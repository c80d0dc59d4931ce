// What the host tables of a bridge-mode VM do to real traffic (src/net/bridge-attachment.ts, host-rules.ts),
// with no VM: three namespaces the test makes and deletes. "host" runs the network manager (bridge
// 10.77.0.1/24); "guest" stands for the VM behind a veth whose host end carries the TAP's name and is
// plumbed like one; "outside" (198.18.0.2, RFC 2544) stands for the world beyond the host. TCP only (no
// ping here): the guest reaches the outside through NAT; deny_outgoing stops that but a DNAT'd port map
// still answers, from the outside and from the host's 127.0.0.1; host services and the cloud metadata
// address are walled; a spoofed source address is dropped.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import { pino } from "pino";
import type { NetworkAttachment } from "../../src/net/attachment.ts";
import { parseAddressWithPrefix, type AddressWithPrefix } from "../../src/net/cidr.ts";
import { IpamStore } from "../../src/net/ipam-store.ts";
import { HostCommands } from "../../src/net/link-commands.ts";
import { NetworkManager } from "../../src/net/network-manager.ts";
import { EMPTY_POLICY } from "../../src/net/policy.ts";
import { Reverter } from "../../src/util/reverter.ts";

const CAN_RUN = process.getuid?.() === 0 && spawnSync("nft", ["--version"]).status === 0;
const id = randomBytes(3).toString("hex");
const NS = { host: `corral-t-${id}-h`, guest: `corral-t-${id}-g`, outside: `corral-t-${id}-o` };
const MAC = "02:fc:00:00:00:02";

function sh(ns: string, cmd: string): { status: number | null; stdout: string; stderr: string } {
  return spawnSync("nsenter", [`--net=/run/netns/${ns}`, "--", "bash", "-c", cmd], { encoding: "utf8", timeout: 20_000 });
}

function must(ns: string, cmd: string): string {
  const r = sh(ns, cmd);
  if (r.status !== 0) throw new Error(`${ns}: ${cmd}: ${r.stderr}`);
  return r.stdout;
}

/** What a TCP client in `ns` reads from ADDRESS:PORT within 10 s (generous: CI is busy) ("" when refused, dropped or timed out). */
function tcpRead(ns: string, address: string, port: number): string {
  return sh(ns, `timeout 10 bash -c 'exec 3<>/dev/tcp/${address}/${port}; cat <&3' 2>/dev/null`).stdout;
}

const servers: ChildProcess[] = [];

/** A TCP server in `ns` that answers `greeting` and closes. */
async function serve(ns: string, address: string, port: number, greeting: string): Promise<void> {
  const code = `require("net").createServer((s) => s.end(${JSON.stringify(greeting)})).listen(${port}, ${JSON.stringify(address)}, () => console.log("up"))`;
  const child = spawn("nsenter", [`--net=/run/netns/${ns}`, "--", process.execPath, "-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  servers.push(child);
  await new Promise<void>((done, fail) => {
    child.stdout?.once("data", () => done());
    child.once("exit", (c) => fail(new Error(`server in ${ns} exited ${c}`)));
  });
}

describe("a bridge-mode VM's rules on real traffic, in namespaces of the test's own", { skip: CAN_RUN ? false : "needs root and nft" }, () => {
  let network: NetworkManager;
  let attachment: NetworkAttachment;
  const revert = new Reverter();

  before(async () => {
    for (const ns of Object.values(NS)) {
      spawnSync("ip", ["netns", "add", ns]);
      must(ns, "ip link set lo up");
    }
    // outside ⇄ host on 198.18.0.0/24; the outside has no route to the VMs' subnet: it only sees the host.
    must(NS.host, `ip link add out0 type veth peer name eth0 netns ${NS.outside}; ip addr add 198.18.0.1/24 dev out0; ip link set out0 up`);
    must(NS.outside, "ip addr add 198.18.0.2/24 dev eth0; ip link set eth0 up");

    const gateway = parseAddressWithPrefix("10.77.0.1/24") as AddressWithPrefix;
    network = new NetworkManager({
      stateDir: `/tmp/${NS.host}-state`,
      groups: [
        { name: "vm", index: 0, network: { mode: "bridge", bridge: "brt0", tapPrefix: "tt", gateway, range: undefined, addresses: [], policy: EMPTY_POLICY }, dnsServers: [] },
      ],
      hostIsolation: true,
      hostAccess: [],
      ipam: new IpamStore(new Database(":memory:")),
      base: { attachmentFor: () => Promise.reject(new Error("not under test")) },
      log: pino({ level: "silent" }),
      runner: new HostCommands(`/run/netns/${NS.host}`),
      caps: { uid: 0, netAdmin: true, sysAdmin: true, tun: true, nft: true, unshare: true, nsenter: true, bridgeNetfilter: true, vhostNet: false },
    });
    await network.start();
    // The guest's NIC, made after the start as QEMU makes its TAP: a veth whose host end has the TAP's name.
    must(NS.host, `ip link add tt0 type veth peer name eth0 netns ${NS.guest}`);
    must(NS.guest, `ip link set eth0 address ${MAC}; ip addr add 10.77.0.2/24 dev eth0; ip link set eth0 up; ip route add default via 10.77.0.1`);
    assert.equal(network.lease("vm", "vm-1", MAC)?.address, "10.77.0.2");
    attachment = await network.attachmentFor({ hostname: "vm-1", hostgroup: "vm", mac: MAC, portMap: [{ guest: 8080, host: 20080 }], denyOutgoing: false, purpose: "vm" });
    await attachment.plumb(process.pid, revert);

    await serve(NS.outside, "198.18.0.2", 9000, "outside");
    await serve(NS.guest, "0.0.0.0", 8080, "guest");
    await serve(NS.host, "10.77.0.1", 7000, "host service");
  });

  after(async () => {
    for (const child of servers) child.kill("SIGKILL");
    await revert.revert().catch(() => undefined);
    await network?.stop({ removeTables: true });
    for (const ns of Object.values(NS)) spawnSync("ip", ["netns", "del", ns]);
  });

  test("the guest reaches the outside through NAT, and the outside reaches the guest's mapped port on the host's address", () => {
    assert.equal(tcpRead(NS.guest, "198.18.0.2", 9000), "outside");
    assert.equal(tcpRead(NS.outside, "198.18.0.1", 20080), "guest");
  });

  test("the host reaches the guest by its address and through 127.0.0.1:PORT", () => {
    assert.equal(tcpRead(NS.host, "10.77.0.2", 8080), "guest");
    assert.equal(tcpRead(NS.host, "127.0.0.1", 20080), "guest");
  });

  test("host services are walled off from the guest", () => {
    assert.equal(tcpRead(NS.host, "10.77.0.1", 7000), "host service", "the service is up");
    assert.equal(tcpRead(NS.guest, "10.77.0.1", 7000), "");
  });

  test("deny_outgoing stops the guest's new connections but not answers on its mapped port; turning it off lets it out again", async () => {
    await network.applyPolicy("vm-1", true);
    assert.equal(tcpRead(NS.guest, "198.18.0.2", 9000), "");
    assert.equal(tcpRead(NS.outside, "198.18.0.1", 20080), "guest");
    await network.applyPolicy("vm-1", false);
    assert.equal(tcpRead(NS.guest, "198.18.0.2", 9000), "outside");
  });

  test("the cloud metadata service the host reaches is not the guest's to reach", async () => {
    // As on a cloud VM: 169.254.169.254 answers beyond the host, which routes to it.
    must(NS.outside, "ip addr add 169.254.169.254/32 dev eth0");
    must(NS.host, "ip route add 169.254.169.254/32 via 198.18.0.2");
    await serve(NS.outside, "169.254.169.254", 8081, "credentials");
    assert.equal(tcpRead(NS.host, "169.254.169.254", 8081), "credentials", "the host reaches it");
    assert.equal(tcpRead(NS.guest, "198.18.0.2", 9000), "outside", "the guest reaches the outside");
    assert.equal(tcpRead(NS.guest, "169.254.169.254", 8081), "");
  });

  test("a guest that takes another address is dropped by the anti-spoof guard", () => {
    must(NS.guest, "ip addr del 10.77.0.2/24 dev eth0; ip addr add 10.77.0.9/24 dev eth0; ip route replace default via 10.77.0.1");
    try {
      assert.equal(tcpRead(NS.guest, "198.18.0.2", 9000), "");
    } finally {
      must(NS.guest, "ip addr del 10.77.0.9/24 dev eth0; ip addr add 10.77.0.2/24 dev eth0; ip route replace default via 10.77.0.1");
    }
    assert.equal(tcpRead(NS.guest, "198.18.0.2", 9000), "outside", "its own address works again");
  });
});
