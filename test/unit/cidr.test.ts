// IPv4 parsing and arithmetic of src/net/cidr.ts: what is accepted, what is refused with which sentence.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import {
  block30,
  cidrContains,
  cidrsOverlap,
  formatCidr,
  formatIpv4,
  isProblem,
  maskOf,
  parseAddressWithPrefix,
  parseCidr,
  parseEgressEntry,
  parseIpv4,
  parseRange,
  rangeOf,
  rangesOverlap,
  sizeOf,
  type Cidr,
} from "../../src/net/cidr.ts";

const cidr = (text: string): Cidr => {
  const parsed = parseCidr(text);
  assert.ok(!isProblem(parsed), text);
  return parsed;
};

describe("parseIpv4 / formatIpv4", () => {
  test("round trips the edges", () => {
    for (const text of ["0.0.0.0", "255.255.255.255", "10.0.0.1", "192.168.137.2"]) assert.equal(formatIpv4(parseIpv4(text)!), text);
    assert.equal(parseIpv4("1.2.3.4"), 0x01020304);
  });

  test("refuses leading zeros, out-of-range octets, wrong counts and junk", () => {
    for (const bad of ["010.0.0.1", "256.0.0.1", "1.2.3", "1.2.3.4.5", "1.2.3.-1", "a.b.c.d", "", " 1.2.3.4", "1.2.3.4/24"]) {
      assert.equal(parseIpv4(bad), undefined, bad);
    }
  });
});

describe("prefixes", () => {
  test("masks and sizes", () => {
    assert.equal(maskOf(0), 0);
    assert.equal(maskOf(24), 0xffffff00);
    assert.equal(maskOf(32), 0xffffffff);
    assert.equal(sizeOf({ prefixLength: 22 }), 1024);
  });

  test("parseCidr: networks, bare addresses as /32, host bits refused unless allowed, IPv6 refused", () => {
    assert.deepEqual(parseCidr("10.0.0.0/8"), { network: 0x0a000000, prefixLength: 8 });
    assert.deepEqual(parseCidr("10.1.2.3"), { network: 0x0a010203, prefixLength: 32 });
    assert.deepEqual(parseCidr("10.1.2.3/8"), { problem: '"10.1.2.3/8" has host bits set: its network is "10.0.0.0/8"' });
    assert.deepEqual(parseCidr("10.1.2.3/8", { allowHostBits: true }), { network: 0x0a000000, prefixLength: 8 });
    assert.deepEqual(parseCidr("::/0"), { problem: '"::/0" is IPv6: only IPv4 is supported' });
    assert.deepEqual(parseCidr("10.0.0.0/33"), { problem: '"10.0.0.0/33" has a prefix length over 32' });
    assert.deepEqual(parseCidr("host"), { problem: '"host" is not an IPv4 address or CIDR, e.g. "10.0.0.0/8"' });
    assert.deepEqual(parseCidr("x/8"), { problem: '"x/8" does not start with an IPv4 address' });
  });

  test("parseAddressWithPrefix keeps the address", () => {
    assert.deepEqual(parseAddressWithPrefix("192.168.137.1/24"), { address: parseIpv4("192.168.137.1"), prefixLength: 24 });
    assert.ok(isProblem(parseAddressWithPrefix("192.168.137.1")));
  });

  test("contains and overlap", () => {
    assert.ok(cidrContains(cidr("10.0.0.0/24"), parseIpv4("10.0.0.255")!));
    assert.ok(!cidrContains(cidr("10.0.0.0/24"), parseIpv4("10.0.1.0")!));
    assert.ok(cidrsOverlap(cidr("10.0.0.0/8"), cidr("10.9.0.0/16")));
    assert.ok(!cidrsOverlap(cidr("10.0.0.0/24"), cidr("10.0.1.0/24")));
    assert.ok(cidrsOverlap(cidr("0.0.0.0/0"), cidr("255.255.255.255")));
    assert.equal(formatCidr(cidr("169.254.100.0/22")), "169.254.100.0/22");
  });
});

describe("ranges", () => {
  test("A-B and CIDR forms", () => {
    assert.deepEqual(parseRange("192.168.137.20-192.168.137.80"), { first: parseIpv4("192.168.137.20"), last: parseIpv4("192.168.137.80") });
    assert.deepEqual(parseRange("10.0.0.0/30"), { first: 0x0a000000, last: 0x0a000003 });
    assert.deepEqual(parseRange("10.0.0.9-10.0.0.1"), { problem: '"10.0.0.9-10.0.0.1" ends before it starts' });
    assert.ok(isProblem(parseRange("10.0.0.1-x")));
    assert.deepEqual(rangeOf(cidr("10.0.0.0/31")), { first: 0x0a000000, last: 0x0a000001 });
  });

  test("overlap is inclusive at both ends", () => {
    assert.ok(rangesOverlap({ first: 1, last: 5 }, { first: 5, last: 9 }));
    assert.ok(!rangesOverlap({ first: 1, last: 4 }, { first: 5, last: 9 }));
  });

  test("/30 blocks: network, gateway, VM, broadcast", () => {
    const range = cidr("169.254.100.0/22");
    assert.deepEqual(Object.values(block30(range, 0)).map(formatIpv4), ["169.254.100.0", "169.254.100.1", "169.254.100.2", "169.254.100.3"]);
    assert.equal(formatIpv4(block30(range, 255).address), "169.254.103.254");
  });
});

describe("parseEgressEntry (Slicer's drop/allow entries)", () => {
  test("CIDR, bare address, ADDRESS:PORT, CIDR:PORT", () => {
    assert.deepEqual(parseEgressEntry("192.168.1.0/24"), { cidr: cidr("192.168.1.0/24"), port: undefined, text: "192.168.1.0/24" });
    assert.deepEqual(parseEgressEntry("1.1.1.1"), { cidr: cidr("1.1.1.1"), port: undefined, text: "1.1.1.1" });
    assert.deepEqual(parseEgressEntry("192.168.222.1:3128"), { cidr: cidr("192.168.222.1"), port: 3128, text: "192.168.222.1:3128" });
    assert.deepEqual(parseEgressEntry(" 10.0.0.0/8:53 "), { cidr: cidr("10.0.0.0/8"), port: 53, text: "10.0.0.0/8:53" });
  });

  test("refusals", () => {
    assert.deepEqual(parseEgressEntry(""), { problem: "is empty: give a CIDR, an address, or ADDRESS:PORT" });
    assert.deepEqual(parseEgressEntry("::/0"), { problem: '"::/0" is IPv6: only IPv4 entries are supported' });
    assert.deepEqual(parseEgressEntry("1.1.1.1:0"), { problem: '"1.1.1.1:0" has no valid port after ":" (1 to 65535)' });
    assert.deepEqual(parseEgressEntry("1.1.1.1:65536"), { problem: '"1.1.1.1:65536" has no valid port after ":" (1 to 65535)' });
    assert.deepEqual(parseEgressEntry("1.1.1.1:http"), { problem: '"1.1.1.1:http" has no valid port after ":" (1 to 65535)' });
    assert.deepEqual(parseEgressEntry("10.0.0.1/8"), { problem: '"10.0.0.1/8" has host bits set: its network is "10.0.0.0/8"' });
    assert.ok(isProblem(parseEgressEntry("example.com")));
  });
});
