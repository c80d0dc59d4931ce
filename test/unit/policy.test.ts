// Egress policy of src/net/policy.ts: list parsing with paths, Slicer's four cases and both of its docs'
// examples, inherit/clear merging, ordering and the nft statements.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { isProblem, type EgressEntry } from "../../src/net/cidr.ts";
import type { EgressPolicy } from "../../src/net/network-config.ts";
import { defaultVerdict, egressStatements, EMPTY_POLICY, mergePolicy, orderedEntries, parseEgressList, parsePolicyOverride } from "../../src/net/policy.ts";

function list(...texts: string[]): EgressEntry[] {
  const parsed = parseEgressList(texts, "t");
  assert.ok(!isProblem(parsed));
  return parsed;
}
const policy = (allow: string[], drop: string[]): EgressPolicy => ({ allow: list(...allow), drop: list(...drop) });

describe("parsing", () => {
  test("a bad entry is named by its path and index", () => {
    assert.deepEqual(parseEgressList(["1.1.1.1", "nope"], 'body field "network.allow"'), {
      problem: 'body field "network.allow"[1] "nope" is not an IPv4 address or CIDR, e.g. "10.0.0.0/8"',
    });
    assert.deepEqual(parseEgressList([], "x"), []);
  });

  test("an override keeps absent and null lists absent and [] as a clear", () => {
    const parsed = parsePolicyOverride({ allow: [], drop: null }, "network");
    assert.deepEqual(parsed, { allow: [] });
    assert.deepEqual(parsePolicyOverride({}, "network"), {});
    assert.deepEqual(parsePolicyOverride({ drop: ["1.1.1.1", "::1"] }, "network"), { problem: 'network.drop[1] "::1" is IPv6: only IPv4 entries are supported' });
  });
});

describe("Slicer's semantics", () => {
  test("neither list: all allowed; only drop: the rest allowed; only allow: the rest dropped; both: the rest allowed", () => {
    assert.equal(defaultVerdict(EMPTY_POLICY), "accept");
    assert.equal(defaultVerdict(policy([], ["10.0.0.0/8"])), "accept");
    assert.equal(defaultVerdict(policy(["10.0.0.0/8"], [])), "drop");
    assert.equal(defaultVerdict(policy(["10.0.0.0/8"], ["0.0.0.0/0"])), "accept");
  });

  test('proxy example: drop ["0.0.0.0/0"], allow ["192.168.222.1:3128"] lets only the proxy through', () => {
    assert.deepEqual(egressStatements(policy(["192.168.222.1:3128"], ["0.0.0.0/0"]), { denyOutgoing: false }), [
      "ip daddr 192.168.222.1/32 meta l4proto { tcp, udp } th dport 3128 accept",
      "ip daddr 0.0.0.0/0 drop",
      "accept",
    ]);
  });

  test('LAN example: drop ["192.168.1.0/24"], allow ["0.0.0.0/0"] blocks the LAN and allows the rest', () => {
    assert.deepEqual(egressStatements(policy(["0.0.0.0/0"], ["192.168.1.0/24"]), { denyOutgoing: false }), ["ip daddr 192.168.1.0/24 drop", "ip daddr 0.0.0.0/0 accept", "accept"]);
  });

  test("ties: a port-specific entry before a port-less one, drop before allow on the same prefix", () => {
    const ordered = orderedEntries(policy(["10.0.0.0/24", "10.0.0.0/24:80"], ["10.0.0.0/24"]));
    assert.deepEqual(
      ordered.map((r) => [r.entry.text, r.verdict]),
      [
        ["10.0.0.0/24:80", "accept"],
        ["10.0.0.0/24", "drop"],
        ["10.0.0.0/24", "accept"],
      ],
    );
  });

  test("deny_outgoing puts ct state new drop first", () => {
    assert.deepEqual(egressStatements(EMPTY_POLICY, { denyOutgoing: true }), ["ct state new drop", "accept"]);
    assert.deepEqual(egressStatements(policy(["1.1.1.1"], []), { denyOutgoing: false }), ["ip daddr 1.1.1.1/32 accept", "drop"]);
  });
});

describe("merging a VM's override with its group's lists", () => {
  const group = policy(["0.0.0.0/0"], ["192.168.1.0/24"]);

  test("no override or absent lists inherit", () => {
    assert.deepEqual(mergePolicy(group, undefined), group);
    assert.deepEqual(mergePolicy(group, {}), group);
  });

  test("[] clears a list; a given list replaces it", () => {
    const merged = mergePolicy(group, { allow: [], drop: list("10.0.0.0/8") });
    assert.deepEqual(merged.allow, []);
    assert.deepEqual(
      merged.drop.map((e) => e.text),
      ["10.0.0.0/8"],
    );
    assert.deepEqual(mergePolicy(group, { drop: [] }).allow, group.allow);
  });
});
