// Egress policy (src/net/policy.ts) judged by verdict: Slicer's drop/allow semantics as nft statements. Each case is checked two
// ways: the literal statements, and a small evaluator that walks them for a destination the way nft does
// (first matching statement wins), so a reordering that changes a verdict shows up as a verdict.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { isProblem, parseCidr, parseIpv4, type Cidr, type EgressEntry } from "../../src/net/cidr.ts";
import type { EgressPolicy } from "../../src/net/network-config.ts";
import { defaultVerdict, egressStatements, mergePolicy, METADATA_CIDR, orderedEntries, parseEgressList, parsePolicyOverride } from "../../src/net/policy.ts";

function list(entries: string[]): EgressEntry[] {
  const parsed = parseEgressList(entries, "test");
  if (isProblem(parsed)) throw new Error(parsed.problem);
  return parsed;
}

function policy(lists: { drop?: string[]; allow?: string[] }): EgressPolicy {
  return { drop: list(lists.drop ?? []), allow: list(lists.allow ?? []) };
}

/** The verdict nft reaches for a new TCP connection to address:port through these statements. */
function verdictFor(statements: string[], address: string, port: number): "accept" | "drop" {
  const target = parseIpv4(address)!;
  for (const line of statements) {
    if (line === "accept" || line === "drop") return line;
    if (line === "ct state new drop") return "drop";
    const match = /^ip daddr (\S+)(?: meta l4proto \{ tcp, udp \} th dport (\d+))? (accept|drop)$/.exec(line);
    assert.ok(match, `unexpected statement: ${line}`);
    const cidr = parseCidr(match[1]!) as Cidr;
    const inside = cidr.prefixLength === 0 || target >>> (32 - cidr.prefixLength) === cidr.network >>> (32 - cidr.prefixLength);
    if (inside && (match[2] === undefined || Number(match[2]) === port)) return match[3] as "accept" | "drop";
  }
  assert.fail("no final verdict");
}

describe("Slicer's four cases", () => {
  test("neither list: everything is allowed", () => {
    const lines = egressStatements(policy({}), { denyOutgoing: false });
    assert.deepEqual(lines, ["accept"]);
    assert.equal(verdictFor(lines, "8.8.8.8", 443), "accept");
  });

  test("only drop: the listed ranges are dropped, the rest allowed", () => {
    const lines = egressStatements(policy({ drop: ["192.168.1.0/24", "10.0.0.5"] }), { denyOutgoing: false });
    assert.deepEqual(lines, ["ip daddr 10.0.0.5/32 drop", "ip daddr 192.168.1.0/24 drop", "accept"]);
    assert.equal(verdictFor(lines, "192.168.1.77", 22), "drop");
    assert.equal(verdictFor(lines, "10.0.0.5", 80), "drop");
    assert.equal(verdictFor(lines, "10.0.0.6", 80), "accept");
  });

  test("only allow: whitelist mode, the rest is dropped", () => {
    const p = policy({ allow: ["10.20.0.0/16", "1.1.1.1:53"] });
    assert.equal(defaultVerdict(p), "drop");
    const lines = egressStatements(p, { denyOutgoing: false });
    assert.deepEqual(lines, ["ip daddr 1.1.1.1/32 meta l4proto { tcp, udp } th dport 53 accept", "ip daddr 10.20.0.0/16 accept", "drop"]);
    assert.equal(verdictFor(lines, "10.20.3.4", 8080), "accept");
    assert.equal(verdictFor(lines, "1.1.1.1", 53), "accept");
    assert.equal(verdictFor(lines, "1.1.1.1", 443), "drop");
    assert.equal(verdictFor(lines, "8.8.8.8", 53), "drop");
  });

  test("both lists: the more specific entry wins, the rest is allowed", () => {
    const lines = egressStatements(policy({ drop: ["10.0.0.0/8"], allow: ["10.1.0.0/16"] }), { denyOutgoing: false });
    assert.equal(verdictFor(lines, "10.1.2.3", 80), "accept");
    assert.equal(verdictFor(lines, "10.2.2.3", 80), "drop");
    assert.equal(verdictFor(lines, "8.8.8.8", 80), "accept");
  });
});

describe("the docs' examples", () => {
  test("proxy only (docs/proxy/linux.md): drop 0.0.0.0/0, allow 192.168.222.1:3128", () => {
    const lines = egressStatements(policy({ drop: ["0.0.0.0/0"], allow: ["192.168.222.1:3128"] }), { denyOutgoing: false });
    assert.deepEqual(lines, ["ip daddr 192.168.222.1/32 meta l4proto { tcp, udp } th dport 3128 accept", "ip daddr 0.0.0.0/0 drop", "accept"]);
    assert.equal(verdictFor(lines, "192.168.222.1", 3128), "accept");
    assert.equal(verdictFor(lines, "192.168.222.1", 22), "drop");
    assert.equal(verdictFor(lines, "8.8.8.8", 443), "drop");
  });

  test("no LAN (docs/platform): drop 192.168.1.0/24, allow 0.0.0.0/0", () => {
    const lines = egressStatements(policy({ drop: ["192.168.1.0/24"], allow: ["0.0.0.0/0"] }), { denyOutgoing: false });
    assert.deepEqual(lines, ["ip daddr 192.168.1.0/24 drop", "ip daddr 0.0.0.0/0 accept", "accept"]);
    assert.equal(verdictFor(lines, "192.168.1.1", 53), "drop");
    assert.equal(verdictFor(lines, "140.82.112.3", 443), "accept");
  });
});

describe("ordering", () => {
  test("at the same prefix an entry with a port comes before one without; drop before allow on a tie", () => {
    const ranked = orderedEntries(policy({ allow: ["10.0.0.1", "10.0.0.1:22"], drop: ["10.0.0.1"] }));
    assert.deepEqual(
      ranked.map((r) => `${r.verdict} ${r.entry.text}`),
      ["accept 10.0.0.1:22", "drop 10.0.0.1", "accept 10.0.0.1"],
    );
  });

  test("a longer prefix beats a port: allow 10.0.0.0/8:443 does not open 10.1.0.0/16, which is dropped", () => {
    const lines = egressStatements(policy({ allow: ["10.0.0.0/8:443"], drop: ["10.1.0.0/16"] }), { denyOutgoing: false });
    assert.equal(verdictFor(lines, "10.1.0.9", 443), "drop");
    assert.equal(verdictFor(lines, "10.2.0.9", 443), "accept");
  });

  test("entries of equal rank keep the order they were written in", () => {
    const ranked = orderedEntries(policy({ drop: ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"] }));
    assert.deepEqual(
      ranked.map((r) => r.entry.text),
      ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"],
    );
  });

  test("deny_outgoing drops every new connection before any entry", () => {
    const lines = egressStatements(policy({ allow: ["0.0.0.0/0"] }), { denyOutgoing: true });
    assert.equal(lines[0], "ct state new drop");
    assert.equal(verdictFor(lines, "8.8.8.8", 53), "drop");
  });
});

describe("guarded addresses (metadata, the VM's own block)", () => {
  const block = parseCidr("169.254.100.0/30") as Cidr;
  const guarded = [METADATA_CIDR, block];

  test("dropped even when everything is allowed", () => {
    const lines = egressStatements(policy({ allow: ["0.0.0.0/0", "169.254.0.0/16"] }), { denyOutgoing: false, guarded });
    assert.equal(verdictFor(lines, "169.254.169.254", 80), "drop");
    assert.equal(verdictFor(lines, "169.254.100.1", 3128), "drop");
    assert.equal(verdictFor(lines, "169.254.7.7", 80), "accept");
  });

  test("an allow entry naming the address opens it; one naming a port opens that port only", () => {
    const lines = egressStatements(policy({ allow: ["169.254.169.254", "169.254.100.1:3128"] }), { denyOutgoing: false, guarded });
    assert.equal(verdictFor(lines, "169.254.169.254", 80), "accept");
    assert.equal(verdictFor(lines, "169.254.100.1", 3128), "accept");
    assert.equal(verdictFor(lines, "169.254.100.1", 22), "drop");
  });

  test("a written drop of the same address still wins over a written allow", () => {
    const lines = egressStatements(policy({ allow: ["169.254.169.254"], drop: ["169.254.169.254"] }), { denyOutgoing: false, guarded });
    assert.equal(verdictFor(lines, "169.254.169.254", 80), "drop");
  });

  test("no guards: nothing is added (bridge mode decides for itself)", () => {
    assert.deepEqual(egressStatements(policy({ allow: ["0.0.0.0/0"] }), { denyOutgoing: false }), ["ip daddr 0.0.0.0/0 accept", "drop"]);
  });
});

describe("override and merge", () => {
  const group = policy({ drop: ["192.168.1.0/24"], allow: ["0.0.0.0/0"] });

  test("an absent list inherits, [] clears, a list replaces", () => {
    const override = parsePolicyOverride({ allow: [], drop: undefined }, 'body field "network"');
    assert.ok(!isProblem(override));
    const merged = mergePolicy(group, override);
    assert.deepEqual(merged.allow, []);
    assert.deepEqual(
      merged.drop.map((e) => e.text),
      ["192.168.1.0/24"],
    );
    assert.deepEqual(mergePolicy(group, undefined), group);
    const replaced = parsePolicyOverride({ drop: ["10.0.0.0/8"], allow: null }, "x");
    assert.ok(!isProblem(replaced));
    assert.deepEqual(
      mergePolicy(group, replaced).drop.map((e) => e.text),
      ["10.0.0.0/8"],
    );
    assert.deepEqual(
      mergePolicy(group, replaced).allow.map((e) => e.text),
      ["0.0.0.0/0"],
    );
  });

  test("a bad entry names its list and index", () => {
    const bad = parsePolicyOverride({ allow: ["10.0.0.0/8", "10.0.0.1/8"] }, 'body field "network"');
    assert.ok(isProblem(bad));
    assert.match(bad.problem, /^body field "network"\.allow\[1\] "10\.0\.0\.1\/8" has host bits set/);
    const v6 = parseEgressList(["::/0"], "config.host_groups[1].network.allow");
    assert.ok(isProblem(v6));
    assert.match(v6.problem, /allow\[0\] "::\/0" is IPv6/);
  });
});
