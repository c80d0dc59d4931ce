// Bridge mode's plumbing against the real kernel (src/net/network-manager.ts, bridge-attachment.ts,
// group-network.ts): a stand-in QEMU (microvm, -S, no kernel: it makes its TAP and waits) in a network
// namespace the test makes and deletes, whatever happens. Plumb → devices and rules present → undo →
// nothing left; a failure at each step leaves nothing; many attach/detach cycles leave no TAP, rule or
// lease; a new manager over the same state re-adopts live TAPs and deletes debris; a foreign interface
// overlapping a group's subnet refuses the start. Nothing touches the host's own namespace.
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import Database from "better-sqlite3";
import { pino } from "pino";
import type { AttachmentProvider, NetworkAttachment } from "../../src/net/attachment.ts";
import type { NetCapabilities } from "../../src/net/capabilities.ts";
import { parseAddressWithPrefix, type AddressWithPrefix } from "../../src/net/cidr.ts";
import { IpamStore } from "../../src/net/ipam-store.ts";
import { HostCommands, type LinkRunner } from "../../src/net/link-commands.ts";
import { NetworkManager } from "../../src/net/network-manager.ts";
import type { BridgeGroupNetwork } from "../../src/net/network-config.ts";
import { EMPTY_POLICY, parseEgressList, type PolicyOverride } from "../../src/net/policy.ts";
import { Reverter } from "../../src/util/reverter.ts";

const CAN_RUN = process.getuid?.() === 0 && spawnSync("qemu-system-x86_64", ["--version"]).status === 0 && spawnSync("nft", ["--version"]).status === 0;
const SKIP = CAN_RUN ? false : "needs root, qemu-system-x86_64 and nft";
const CYCLES = Number(process.env.CORRAL_NET_CYCLES ?? (process.env.CORRAL_LONG_TESTS === "1" ? 1000 : 200));

const CAPS: NetCapabilities = { uid: 0, netAdmin: true, sysAdmin: true, tun: true, nft: true, unshare: true, nsenter: true, bridgeNetfilter: true, vhostNet: false };
const log = pino({ level: "silent" });

const ns = `corral-t-${randomBytes(3).toString("hex")}`;
const nsPath = `/run/netns/${ns}`;
const inNs = (cmd: string): string => {
  const r = spawnSync("nsenter", [`--net=${nsPath}`, "--", "sh", "-c", cmd], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
  return r.stdout;
};
const links = (): { ifname: string; master?: string; ifalias?: string }[] => JSON.parse(inNs("ip -j -d link show")) as { ifname: string; master?: string; ifalias?: string }[];

function gateway(text: string): AddressWithPrefix {
  const parsed = parseAddressWithPrefix(text);
  if ("problem" in parsed) throw new Error(parsed.problem);
  return parsed;
}

function bridgeNetwork(extra: Partial<BridgeGroupNetwork> = {}): BridgeGroupNetwork {
  return { mode: "bridge", bridge: "brt0", tapPrefix: "tt", gateway: gateway("10.77.0.1/24"), range: undefined, addresses: [], policy: EMPTY_POLICY, ...extra };
}

const NO_BASE: AttachmentProvider = { attachmentFor: () => Promise.reject(new Error("user mode is not under test")) };

const overrides = new Map<string, PolicyOverride>();

function manager(db: Database.Database, runner: LinkRunner = new HostCommands(nsPath), network = bridgeNetwork(), logger = log): NetworkManager {
  return new NetworkManager({
    stateDir: `/tmp/${ns}-state`,
    groups: [{ name: "vm", index: 0, network, dnsServers: ["10.77.0.1"] }],
    hostIsolation: true,
    hostAccess: [],
    ipam: new IpamStore(db),
    base: NO_BASE,
    log: logger,
    runner,
    caps: CAPS,
    overrideOf: (hostname) => overrides.get(hostname),
  });
}

const qemus = new Set<ChildProcess>();

/** A QEMU that opens the attachment's TAP inside the test namespace and waits frozen, as a real VM would start. */
async function standIn(attachment: NetworkAttachment): Promise<ChildProcess> {
  const netdev = attachment.netdev;
  assert.equal(netdev.kind, "tap");
  const child = spawn(
    "nsenter",
    [
      `--net=${nsPath}`,
      "--",
      "qemu-system-x86_64",
      "-M",
      "microvm",
      "-S",
      "-nodefaults",
      "-nographic",
      "-m",
      "64M",
      "-netdev",
      `tap,id=net0,ifname=${netdev.kind === "tap" ? netdev.ifname : ""},script=no,downscript=no,vnet_hdr=on`,
      "-device",
      `virtio-net-device,netdev=net0,mac=${attachment.guest.mac}`,
    ],
    { stdio: "ignore" },
  );
  qemus.add(child);
  child.once("exit", () => qemus.delete(child));
  const ifname = netdev.kind === "tap" ? netdev.ifname : "";
  for (let i = 0; i < 600; i++) {
    if (links().some((l) => l.ifname === ifname)) return child;
    if (child.exitCode !== null) throw new Error(`the stand-in QEMU exited with ${child.exitCode}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no TAP ${ifname} after 30 s`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGKILL");
  await exited;
}

/** What the daemon's tables hold of VMs: chains and elements beyond the empty tables. */
function vmRules(): string[] {
  const text = inNs("nft list ruleset");
  return text
    .split("\n")
    .filter((l) => /chain (vm|guard)_\d|jump (vm|guard)_\d|10\.77\.0\.\d+ \./.test(l))
    .map((l) => l.trim());
}

const mac = (n: number): string => `02:fc:00:00:${((n >> 8) & 255).toString(16).padStart(2, "0")}:${(n & 255).toString(16).padStart(2, "0")}`;

describe("NetworkManager, bridge mode, in a namespace of the test's own", { skip: SKIP }, () => {
  before(() => {
    spawnSync("ip", ["netns", "add", ns]);
    inNs("ip link set lo up");
  });
  after(async () => {
    for (const child of [...qemus]) await stop(child);
    spawnSync("ip", ["netns", "del", ns]);
  });

  test("start makes the bridge with its alias, address and bridge netfilter; plumb puts the TAP on it and the VM in the tables; undo leaves nothing", async () => {
    const db = new Database(":memory:");
    const network = manager(db);
    await network.start();
    const bridge = links().find((l) => l.ifname === "brt0");
    assert.equal(bridge?.ifalias, `corral:${network.tag}:vm`);
    assert.match(inNs("ip -4 addr show dev brt0"), /inet 10\.77\.0\.1\/24/);
    // (sysfs shows the test's own namespace: ask ip)
    const details = JSON.parse(inNs("ip -d -j link show brt0")) as { linkinfo: { info_data: { nf_call_iptables: number } } }[];
    assert.equal(details[0]?.linkinfo.info_data.nf_call_iptables, 1);
    assert.equal(network.group("vm")?.state, "ready");

    const lease = network.lease("vm", "vm-1", mac(1));
    assert.equal(lease?.address, "10.77.0.2");
    const attachment = await network.attachmentFor({ hostname: "vm-1", hostgroup: "vm", mac: mac(1), portMap: [{ guest: 22, host: 20022 }], denyOutgoing: true, purpose: "vm" });
    assert.deepEqual(attachment.guest, { address: "10.77.0.2", prefixLength: 24, gateway: "10.77.0.1", dns: ["10.77.0.1"], mac: mac(1) });
    assert.deepEqual(attachment.view(), { mode: "bridge", mac: mac(1), address: "10.77.0.2", prefix_length: 24, gateway: "10.77.0.1", bridge: "brt0", target_dev: "tt0" });
    assert.equal(attachment.needsPlumbing, true);
    const qemu = await standIn(attachment);
    const revert = new Reverter();
    await attachment.plumb(qemu.pid as number, revert);
    const tap = links().find((l) => l.ifname === "tt0");
    assert.equal(tap?.master, "brt0");
    assert.equal(tap?.ifalias, `corral:${network.tag}:vm:0`);
    const rules = inNs("nft list ruleset");
    assert.match(rules, /10\.77\.0\.2 : jump vm_0/);
    assert.match(rules, /"tt0" : jump guard_0/);
    assert.match(rules, /20022 : 10\.77\.0\.2 \. 22/);
    assert.match(rules, /chain vm_0 \{\n\t\tct state new drop\n/);
    assert.equal(network.nicOf("vm-1", "vm", mac(1))?.target_dev, "tt0");

    await revert.revert();
    await stop(qemu);
    network.release("vm-1");
    await network.applyTables();
    assert.deepEqual(vmRules(), []);
    assert.equal(
      links().some((l) => l.ifname.startsWith("tt")),
      false,
    );
    assert.deepEqual(new IpamStore(db).leases(), []);
    await network.stop({ removeTables: true });
    assert.equal(inNs("nft list tables").trim(), "");
  });

  test("a failure at each step of plumb leaves no rule behind once the undo ran", async () => {
    const db = new Database(":memory:");
    const real = new HostCommands(nsPath);
    let failAt = -1;
    let step = 0;
    const failing: LinkRunner = {
      ipBatch: (script, options) => (step++ === failAt ? Promise.reject(new Error("injected ip failure")) : real.ipBatch(script, options)),
      links: () => real.links(),
      sysctl: (path, value) => real.sysctl(path, value),
      nft: (args, input) => (args[0] === "-f" && step++ === failAt ? Promise.reject(new Error("injected nft failure")) : real.nft(args, input)),
    };
    const network = manager(db, failing);
    await network.start();
    for (const at of [0, 1]) {
      step = 0;
      failAt = at;
      network.lease("vm", "vm-f", mac(2));
      const attachment = await network.attachmentFor({ hostname: "vm-f", hostgroup: "vm", mac: mac(2), portMap: [], denyOutgoing: false, purpose: "vm" });
      const qemu = await standIn(attachment);
      const revert = new Reverter();
      await assert.rejects(attachment.plumb(qemu.pid as number, revert), /injected/);
      failAt = -1;
      await revert.revert();
      await stop(qemu);
      network.release("vm-f");
      await network.applyTables();
      assert.deepEqual(vmRules(), [], `failure at step ${at}`);
      assert.equal(
        links().some((l) => l.ifname.startsWith("tt")),
        false,
      );
    }
    await network.stop({ removeTables: true });
  });

  test(`${CYCLES} attach/detach cycles at concurrency 4 leave no TAP, chain, element or lease`, async () => {
    const db = new Database(":memory:");
    const network = manager(db);
    await network.start();
    let next = 0;
    const addresses = new Set<string>();
    const worker = async (): Promise<void> => {
      while (next < CYCLES) {
        const n = next++;
        const hostname = `vm-c${n}`;
        const lease = network.lease("vm", hostname, mac(n));
        assert.ok(lease);
        const attachment = await network.attachmentFor({
          hostname,
          hostgroup: "vm",
          mac: mac(n),
          portMap: [{ guest: 80, host: 21000 + n }],
          denyOutgoing: n % 2 === 0,
          purpose: "vm",
        });
        const qemu = await standIn(attachment);
        const revert = new Reverter();
        await attachment.plumb(qemu.pid as number, revert);
        for (const other of network.rulesInput().bridgeVms) if (other.tap !== (attachment.netdev as { ifname: string }).ifname) assert.notEqual(other.address, lease.address);
        addresses.add(lease.address);
        await revert.revert();
        await stop(qemu);
        network.release(hostname);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    await network.applyTables();
    assert.deepEqual(vmRules(), []);
    assert.deepEqual(
      links()
        .filter((l) => l.ifname.startsWith("tt"))
        .map((l) => l.ifname),
      [],
    );
    assert.deepEqual(new IpamStore(db).leases(), []);
    assert.ok(addresses.size > 4, "the cursor moves on: addresses are not reused at once");
    await network.stop({ removeTables: true });
  });

  test("a new manager over the same state re-adopts a live TAP and deletes debris with this daemon's alias", async () => {
    const db = new Database(":memory:");
    const first = manager(db);
    await first.start();
    first.lease("vm", "vm-live", mac(7));
    const attachment = await first.attachmentFor({ hostname: "vm-live", hostgroup: "vm", mac: mac(7), portMap: [], denyOutgoing: false, purpose: "vm" });
    const qemu = await standIn(attachment);
    await attachment.plumb(qemu.pid as number, new Reverter());
    // The daemon dies (kill -9): nothing is undone. Someone takes the TAP off the bridge, and a TAP of ours
    // whose QEMU is gone stays behind (as a persistent TAP would).
    inNs(`ip link set dev tt0 nomaster; ip tuntap add mode tap name tt9; ip link set dev tt9 alias corral:${first.tag}:vm:9`);
    inNs(`nft delete table bridge corral_br_${first.tag}`);

    const second = manager(db);
    await second.start();
    first.lease("vm", "stale", mac(8));
    await second.reconcile([{ hostname: "vm-live", hostgroup: "vm", pid: qemu.pid as number, mac: mac(7), portMap: [], denyOutgoing: false }], new Set(["vm-live"]));
    assert.equal(links().find((l) => l.ifname === "tt0")?.master, "brt0");
    assert.equal(
      links().some((l) => l.ifname === "tt9"),
      false,
      "debris deleted",
    );
    assert.match(inNs("nft list ruleset"), /"tt0" : jump guard_/);
    assert.deepEqual(
      new IpamStore(db).leases().map((l) => l.owner),
      ["vm-live"],
      "a lease without a VM is swept",
    );
    await stop(qemu);
    await second.repair();
    assert.deepEqual(vmRules(), [], "the repair loop takes a VM whose QEMU is gone out of the tables");
    inNs(`nft delete table inet corral_net_${second.tag}`);
    await second.repair();
    assert.match(inNs("nft list tables"), new RegExp(`corral_net_${second.tag}`), "removed tables come back");
    await second.stop({ removeTables: true });
  });

  test("a group subnet overlapping an interface that is not this daemon's refuses the start; a foreign bridge name makes the group unavailable", async () => {
    inNs("ip link add dummyx type bridge; ip addr add 10.88.5.1/16 dev dummyx");
    try {
      await assert.rejects(
        manager(new Database(":memory:"), new HostCommands(nsPath), bridgeNetwork({ bridge: "brt1", gateway: gateway("10.88.0.1/24") })).start(),
        /^Error: Cannot start: config\.host_groups\[0\]\.network\.gateway "10\.88\.0\.1\/24" overlaps 10\.88\.0\.0\/16 on interface "dummyx" \(not Corral's\): give this host group another subnet$/,
      );
      const foreign = manager(new Database(":memory:"), new HostCommands(nsPath), bridgeNetwork({ bridge: "dummyx", gateway: gateway("10.99.0.1/24") }));
      await foreign.start();
      assert.equal(foreign.group("vm")?.state, "unavailable");
      assert.match(foreign.group("vm")?.reason ?? "", /^Host group "vm" \(network.mode bridge\) is unavailable: the interface "dummyx" exists and is not Corral's/);
      assert.throws(
        () => foreign.lease("vm", "x", mac(1)),
        (err: Error & { code?: string }) => err.code === "network_unavailable",
      );
      await foreign.stop({ removeTables: true });
    } finally {
      inNs("ip link del dummyx");
    }
  });

  test("start deletes the tables of a daemon whose state directory is gone, and only those", async () => {
    const gone = "/nonexistent/corral-state-gone";
    inNs(`nft add table inet corral_net_deadbeef '{ comment "corral 0 ${gone}"; }'; nft add table inet corral_net_feedbeef '{ comment "corral 0 /tmp"; }'`);
    const network = manager(new Database(":memory:"));
    await network.start();
    const tables = inNs("nft list tables");
    assert.doesNotMatch(tables, /corral_net_deadbeef/);
    assert.match(tables, /corral_net_feedbeef/);
    assert.match(tables, new RegExp(`corral_net_${network.tag}`));
    inNs("nft delete table inet corral_net_feedbeef");
    await network.stop({ removeTables: true });
  });

  test("another firewall's forward chain with policy drop (Docker's) is warned about at start, with the fix", async () => {
    inNs(`nft add table ip filter; nft add chain ip filter FORWARD '{ type filter hook forward priority 0; policy drop; }'`);
    const lines: string[] = [];
    const capture = pino({ level: "warn" }, { write: (line: string) => void lines.push(line) });
    const network = manager(new Database(":memory:"), new HostCommands(nsPath), bridgeNetwork(), capture);
    try {
      await network.start();
      assert.ok(
        lines.some(
          (l) =>
            l.includes("Forwarded traffic is dropped by another firewall's chain (ip filter FORWARD; Docker does this)") &&
            l.includes("iptables -I DOCKER-USER -s 10.77.0.0/24 -j ACCEPT"),
        ),
        lines.join("\n"),
      );
    } finally {
      inNs("nft delete table ip filter");
      await network.stop({ removeTables: true });
    }
  });

  test("policy at runtime: an override rewrites the VM's chain", async () => {
    const db = new Database(":memory:");
    const network = manager(db);
    await network.start();
    network.lease("vm", "vm-p", mac(3));
    const attachment = await network.attachmentFor({ hostname: "vm-p", hostgroup: "vm", mac: mac(3), portMap: [], denyOutgoing: false, purpose: "vm" });
    const qemu = await standIn(attachment);
    const revert = new Reverter();
    await attachment.plumb(qemu.pid as number, revert);
    const drop = parseEgressList(["0.0.0.0/0"], "t");
    const allow = parseEgressList(["192.0.2.7:3128"], "t");
    assert.ok(Array.isArray(drop) && Array.isArray(allow));
    overrides.set("vm-p", { drop, allow });
    await network.applyPolicy("vm-p", true);
    assert.match(
      inNs("nft list ruleset"),
      /chain vm_\d+ \{\n\t\tct state new drop\n\t\tip daddr 192\.0\.2\.7 meta l4proto \{ tcp, udp \} th dport 3128 accept\n\t\tip daddr 169\.254\.169\.254 drop\n\t\tip daddr 0\.0\.0\.0\/0 drop\n\t\taccept\n/,
    );
    await revert.revert();
    await stop(qemu);
    network.release("vm-p");
    await network.stop({ removeTables: true });
  });
});
