// Address allocation (src/net/ipam.ts, src/net/ipam-store.ts): pools per mode, the round-robin cursor,
// static addresses, exhaustion, pinned subnets, and that no address is ever given twice.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import Database from "better-sqlite3";
import { parseAddressWithPrefix, parseCidr, parseIpv4, parseRange, type AddressWithPrefix, type Cidr } from "../../src/net/cidr.ts";
import { bridgePool, isolatedPool, lowestFreeId, nextFreeSlot } from "../../src/net/ipam.ts";
import { IpamStore } from "../../src/net/ipam-store.ts";
import type { BridgeGroupNetwork, IsolatedGroupNetwork } from "../../src/net/network-config.ts";
import { EMPTY_POLICY } from "../../src/net/policy.ts";
import { CorralError } from "../../src/protocol/errors.ts";

function must<T>(value: T | { problem: string }): T {
  if (typeof value === "object" && value !== null && "problem" in value) throw new Error(value.problem);
  return value as T;
}

function bridge(gateway: string, extra: Partial<BridgeGroupNetwork> = {}): BridgeGroupNetwork {
  return {
    mode: "bridge",
    bridge: "brvm0",
    tapPrefix: "vmtap",
    gateway: must<AddressWithPrefix>(parseAddressWithPrefix(gateway)),
    range: undefined,
    addresses: [],
    policy: EMPTY_POLICY,
    ...extra,
  };
}

function isolated(range: string): IsolatedGroupNetwork {
  return { mode: "isolated", range: must<Cidr>(parseCidr(range)), rangeDerived: false, policy: EMPTY_POLICY };
}

const PATH = "config.host_groups[0].network";
const ip = (text: string): number => parseIpv4(text) as number;
const store = (): IpamStore => new IpamStore(new Database(":memory:"));

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof CorralError) return `${err.code}: ${err.message}`;
    throw err;
  }
  return "no error";
}

describe("pools", () => {
  test("a /24 gateway: 253 addresses, the first is .2 (Slicer), gateway, network and broadcast never handed out", () => {
    const pool = bridgePool("vm", bridge("192.168.137.1/24"), PATH);
    assert.equal(pool.size, 253);
    assert.equal(pool.slot(0).address, ip("192.168.137.2"));
    assert.equal(pool.slot(252).address, ip("192.168.137.254"));
    assert.equal(pool.slot(0).gateway, ip("192.168.137.1"));
    assert.equal(pool.slot(0).prefixLength, 24);
    assert.equal(pool.slotOf(ip("192.168.137.1")), undefined);
    assert.equal(pool.slotOf(ip("192.168.137.255")), undefined);
    assert.equal(pool.subnet, "192.168.137.0/24");
    assert.equal(pool.widenField, `${PATH}.gateway`);
  });

  test("a range narrows the pool; static addresses replace it", () => {
    const ranged = bridgePool("vm", bridge("192.168.137.1/24", { range: must(parseRange("192.168.137.20-192.168.137.80")) }), PATH);
    assert.equal(ranged.size, 61);
    assert.equal(ranged.slot(0).address, ip("192.168.137.20"));
    assert.equal(ranged.widenField, `${PATH}.range`);
    const listed = bridgePool("vm", bridge("192.168.137.1/24", { addresses: [ip("192.168.137.9"), ip("192.168.137.3"), ip("192.168.137.1")] }), PATH);
    assert.deepEqual([listed.slot(0).address, listed.slot(1).address], [ip("192.168.137.3"), ip("192.168.137.9")]);
    assert.equal(listed.size, 2, "the gateway's own address is never a VM's");
    assert.equal(listed.widenField, `${PATH}.addresses`);
  });

  test("isolated: a /22 is 256 /30 blocks; the VM is block+2, its gateway block+1", () => {
    const pool = isolatedPool("sandbox", isolated("169.254.100.0/22"), PATH);
    assert.equal(pool.size, 256);
    assert.deepEqual(pool.slot(0), { address: ip("169.254.100.2"), prefixLength: 30, gateway: ip("169.254.100.1"), blockNetwork: ip("169.254.100.0") });
    assert.equal(pool.slot(255).address, ip("169.254.103.254"));
    assert.equal(pool.slotOf(ip("169.254.100.6")), 1);
    assert.equal(pool.slotOf(ip("169.254.100.5")), undefined, "a block's gateway is not a VM address");
    assert.equal(isolatedPool("s", isolated("169.254.100.0/30"), PATH).size, 1);
  });

  test("round robin wraps and skips taken slots; device ids take the lowest free", () => {
    assert.equal(nextFreeSlot(4, 0, new Set()), 0);
    assert.equal(nextFreeSlot(4, 3, new Set([3])), 0);
    assert.equal(nextFreeSlot(4, 5, new Set([1])), 2);
    assert.equal(nextFreeSlot(2, 0, new Set([0, 1])), undefined);
    assert.equal(lowestFreeId(new Set([0, 1, 3])), 2);
    assert.equal(lowestFreeId(new Set([0, 1, 2]), 2), undefined);
  });
});

describe("IpamStore", () => {
  test("the first VM gets .2, the next .3; a freed address is not handed out again at once", () => {
    const ipam = store();
    const pool = bridgePool("vm", bridge("192.168.137.1/24"), PATH);
    const a = ipam.allocate(pool, { owner: "vm-1", ownerKind: "vm", mac: "02:00:00:00:00:01" });
    const b = ipam.allocate(pool, { owner: "vm-2", ownerKind: "vm", mac: "02:00:00:00:00:02" });
    assert.deepEqual([a.address, a.deviceId, b.address, b.deviceId], ["192.168.137.2", 0, "192.168.137.3", 1]);
    assert.equal(ipam.release("vm-1"), true);
    const c = ipam.allocate(pool, { owner: "vm-3", ownerKind: "vm", mac: "02:00:00:00:00:03" });
    assert.equal(c.address, "192.168.137.4");
    assert.equal(c.deviceId, 0, "device ids are reused lowest first (names stay short)");
  });

  test("exhaustion: 429 hostgroup_full naming the group and the field to widen", () => {
    const ipam = store();
    const pool = bridgePool("vm", bridge("10.9.0.1/29"), "config.host_groups[2].network");
    for (let i = 0; i < 5; i++) ipam.allocate(pool, { owner: `vm-${i}`, ownerKind: "vm", mac: "02:00:00:00:00:01" });
    assert.equal(
      codeOf(() => ipam.allocate(pool, { owner: "vm-x", ownerKind: "vm", mac: "02:00:00:00:00:01" })),
      'hostgroup_full: Host group "vm" has no free address: its 5 addresses are leased; delete a VM or widen config.host_groups[2].network.gateway',
    );
  });

  test("static ip: honoured, 409 address_in_use when taken, 400 outside the pool", () => {
    const ipam = store();
    const pool = bridgePool("vm", bridge("192.168.137.1/24", { range: must(parseRange("192.168.137.20-192.168.137.80")) }), PATH);
    assert.equal(ipam.allocate(pool, { owner: "a", ownerKind: "vm", mac: "m", ip: "192.168.137.50" }).address, "192.168.137.50");
    assert.match(
      codeOf(() => ipam.allocate(pool, { owner: "b", ownerKind: "vm", mac: "m", ip: "192.168.137.50" })),
      /^address_in_use: Address "192.168.137.50" is in use by "a"/,
    );
    assert.match(
      codeOf(() => ipam.allocate(pool, { owner: "b", ownerKind: "vm", mac: "m", ip: "192.168.137.90" })),
      /^invalid_request: Address "192.168.137.90" is not in host group "vm"'s pool/,
    );
    assert.match(
      codeOf(() => ipam.allocate(pool, { owner: "b", ownerKind: "vm", mac: "m", ip: "nonsense" })),
      /^invalid_request/,
    );
  });

  test("the same address is refused across groups (UNIQUE address)", () => {
    const ipam = store();
    const one = bridgePool("one", bridge("10.1.0.1/24"), PATH);
    const two = bridgePool("two", bridge("10.1.0.1/24"), PATH);
    ipam.allocate(one, { owner: "a", ownerKind: "vm", mac: "m" });
    assert.match(
      codeOf(() => ipam.allocate(two, { owner: "b", ownerKind: "vm", mac: "m" })),
      /^address_in_use/,
    );
  });

  test("1,000 allocate/release cycles never hand out an address or a device id twice", () => {
    const ipam = store();
    const pool = bridgePool("vm", bridge("10.2.0.1/26"), PATH);
    const held = new Map<string, { address: string; deviceId: number }>();
    let n = 0;
    let seed = 7;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let cycle = 0; cycle < 1000; cycle++) {
      if (held.size > 0 && (random() < 0.45 || held.size >= pool.size)) {
        const owners = [...held.keys()];
        const owner = owners[Math.floor(random() * owners.length)] as string;
        assert.equal(ipam.release(owner), true);
        held.delete(owner);
      } else {
        const lease = ipam.allocate(pool, { owner: `vm-${n++}`, ownerKind: "vm", mac: "m" });
        for (const other of held.values()) {
          assert.notEqual(other.address, lease.address);
          assert.notEqual(other.deviceId, lease.deviceId);
        }
        held.set(lease.owner, lease);
      }
      assert.equal(ipam.leases().length, held.size);
    }
    for (const owner of [...held.keys()]) ipam.release(owner);
    assert.deepEqual(ipam.leases(), []);
  });

  test("pool leases are renamed at hand-out; sweep frees leases and port maps without an owner", () => {
    const ipam = store();
    const pool = isolatedPool("sandbox", isolated("169.254.100.0/22"), PATH);
    ipam.allocate(pool, { owner: "pool-1", ownerKind: "pool", mac: "m" });
    ipam.allocatePorts("pool-1", [22, 8080], { first: 20000, last: 20010 }, (p) => p !== 20001);
    ipam.rename("pool-1", "sandbox-1");
    assert.equal(ipam.leaseOf("sandbox-1")?.ownerKind, "vm");
    assert.deepEqual(
      ipam.portMaps("sandbox-1").map((m) => [m.guestPort, m.hostPort]),
      [
        [22, 20000],
        [8080, 20002],
      ],
    );
    ipam.allocate(pool, { owner: "gone", ownerKind: "vm", mac: "m" });
    ipam.allocatePorts("gone", [22], { first: 20000, last: 20010 });
    const swept = ipam.sweep(new Set(["sandbox-1"]));
    assert.deepEqual(
      swept.map((l) => l.owner),
      ["gone"],
    );
    assert.deepEqual(
      ipam.leases().map((l) => l.owner),
      ["sandbox-1"],
    );
    assert.deepEqual(
      ipam.portMaps().map((m) => m.owner),
      ["sandbox-1", "sandbox-1"],
    );
    assert.match(
      codeOf(() => ipam.allocatePorts("x", [1, 2], { first: 30000, last: 30000 })),
      /^hostgroup_full: No free host port.*config.network.port_range/,
    );
  });

  test("a derived isolated range is pinned in net_groups; a changed subnet with leases left refuses the start", () => {
    const db = new Database(":memory:");
    const ipam = new IpamStore(db);
    assert.equal(ipam.pinGroup("sandbox", "isolated", "169.254.100.0/22"), "169.254.100.0/22");
    assert.equal(ipam.pinGroup("sandbox", "isolated", "169.254.44.0/22", { keepPinned: true }), "169.254.100.0/22", "a derived range stays where it was");
    const pool = isolatedPool("sandbox", isolated("169.254.100.0/22"), PATH);
    ipam.allocate(pool, { owner: "sandbox-1", ownerKind: "vm", mac: "m" });
    assert.throws(
      () => ipam.pinGroup("sandbox", "isolated", "169.254.200.0/22"),
      /Cannot start: host group "sandbox" changed its network from isolated 169.254.100.0\/22 to isolated 169.254.200.0\/22 while 1 VM\(s\) hold addresses in the old one: "sandbox-1" \(169.254.100.2\)/,
    );
    ipam.release("sandbox-1");
    assert.equal(ipam.pinGroup("sandbox", "isolated", "169.254.200.0/22"), "169.254.200.0/22");
    assert.equal(new IpamStore(db).pinGroup("sandbox", "isolated", "169.254.200.0/22"), "169.254.200.0/22", "a second open migrates nothing twice");
  });
});
