// The wall's nft rules as literal text (src/net/host-isolation-rules.ts), and the knob's grammar
// (src/net/host-access.ts): a change to either shows here first.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { formatHostAccess, parseHostAccess, type HostAccess } from "../../src/net/host-access.ts";
import { allowanceChain, allowanceScript, parseAllowanceJumps, releaseScript, resolversOf, wallBaseScript } from "../../src/net/host-isolation-rules.ts";

const access = (entry: string): HostAccess => {
  const parsed = parseHostAccess(entry);
  if ("problem" in parsed) throw new Error(parsed.problem);
  return parsed;
};

describe("wallBaseScript", () => {
  test("pins the whole transaction: output chain replaced, dispatch chain kept, DNS to the resolvers let through", () => {
    assert.equal(
      wallBaseScript({ gid: 997, resolvers: ["127.0.0.53", "::1"] }),
      [
        "add table inet corral_guard",
        "add chain inet corral_guard allow",
        "add chain inet corral_guard output",
        "flush chain inet corral_guard output",
        "delete chain inet corral_guard output",
        "add chain inet corral_guard output { type filter hook output priority -150; policy accept; }",
        "add rule inet corral_guard output meta skgid != 997 return",
        "add rule inet corral_guard output ct direction reply return",
        "add rule inet corral_guard output fib daddr type != { local, broadcast, multicast } return",
        "add rule inet corral_guard output ip daddr 127.0.0.53 meta l4proto { tcp, udp } th dport 53 accept",
        "add rule inet corral_guard output ip6 daddr ::1 meta l4proto { tcp, udp } th dport 53 accept",
        "add rule inet corral_guard output jump allow",
        `add rule inet corral_guard output meta l4proto tcp reject with tcp reset comment "Corral guests may not reach this host's services"`,
        `add rule inet corral_guard output reject with icmpx type admin-prohibited comment "Corral guests may not reach this host's services"`,
        "",
      ].join("\n"),
    );
  });

  test("no resolvers: no DNS rule", () => {
    assert.doesNotMatch(wallBaseScript({ gid: 5, resolvers: [] }), /dport 53/);
  });
});

describe("allowanceScript", () => {
  const stateDir = "/var/lib/corral/daemon";
  const own = allowanceChain(stateDir);

  test("a daemon's chain is named after its state directory, the same every time", () => {
    assert.match(own, /^allow_[0-9a-f]{12}$/);
    assert.equal(allowanceChain(stateDir), own);
    assert.notEqual(allowanceChain("/tmp/other"), own);
  });

  test("first start: the chain gets one rule per entry and one jump with the state directory as its comment", () => {
    const script = allowanceScript({ stateDir, access: [access("127.0.0.1:5432"), access("udp/[::1]:53"), access("6379"), access("tcp/8000-8010")], jumps: [], staleOwners: [] });
    assert.equal(
      script,
      [
        `add chain inet corral_guard ${own}`,
        `flush chain inet corral_guard ${own}`,
        `add rule inet corral_guard ${own} ip daddr 127.0.0.1 tcp dport 5432 accept comment "tcp/127.0.0.1:5432"`,
        `add rule inet corral_guard ${own} ip6 daddr ::1 udp dport 53 accept comment "udp/[::1]:53"`,
        `add rule inet corral_guard ${own} tcp dport 6379 accept comment "tcp/6379"`,
        `add rule inet corral_guard ${own} tcp dport 8000-8010 accept comment "tcp/8000-8010"`,
        `add rule inet corral_guard allow jump ${own} comment "/var/lib/corral/daemon"`,
        "",
      ].join("\n"),
    );
  });

  test("a restart replaces the chain's rules and keeps its one jump; another daemon's jump is not touched", () => {
    const jumps = [
      { handle: 7, target: own, owner: stateDir },
      { handle: 9, target: allowanceChain("/srv/corral-b"), owner: "/srv/corral-b" },
    ];
    assert.equal(
      allowanceScript({ stateDir, access: [access("tcp/6379")], jumps, staleOwners: [] }),
      [`add chain inet corral_guard ${own}`, `flush chain inet corral_guard ${own}`, `add rule inet corral_guard ${own} tcp dport 6379 accept comment "tcp/6379"`, ""].join("\n"),
    );
  });

  test("no allowances: the daemon's jump and chain go (the chain is added first so that removing works either way)", () => {
    const jumps = [{ handle: 7, target: own, owner: stateDir }];
    assert.equal(
      allowanceScript({ stateDir, access: [], jumps, staleOwners: [] }),
      [
        "delete rule inet corral_guard allow handle 7",
        `add chain inet corral_guard ${own}`,
        `flush chain inet corral_guard ${own}`,
        `delete chain inet corral_guard ${own}`,
        "",
      ].join("\n"),
    );
  });

  test("the allowances of a daemon whose state directory is gone are removed in the same transaction", () => {
    const gone = "/tmp/corral-t-gone";
    const jumps = [{ handle: 3, target: allowanceChain(gone), owner: gone }];
    const script = allowanceScript({ stateDir, access: [], jumps, staleOwners: [gone, stateDir] });
    assert.equal(
      script,
      [
        "delete rule inet corral_guard allow handle 3",
        `add chain inet corral_guard ${allowanceChain(gone)}`,
        `flush chain inet corral_guard ${allowanceChain(gone)}`,
        `delete chain inet corral_guard ${allowanceChain(gone)}`,
        `add chain inet corral_guard ${own}`,
        `flush chain inet corral_guard ${own}`,
        `delete chain inet corral_guard ${own}`,
        "",
      ].join("\n"),
    );
  });

  test("a state directory nft could not quote is left out of the comment, never spliced into the script", () => {
    const odd = '/tmp/x" ; flush ruleset ; "';
    const script = allowanceScript({ stateDir: odd, access: [access("80")], jumps: [], staleOwners: [] });
    assert.ok(script.endsWith(`add rule inet corral_guard allow jump ${allowanceChain(odd)}\n`), script);
    assert.doesNotMatch(script, /flush ruleset/);
  });

  test("releaseScript: a stopping daemon removes its jumps and chain only", () => {
    const jumps = [
      { handle: 7, target: own, owner: stateDir },
      { handle: 9, target: "allow_other", owner: "/srv/b" },
    ];
    assert.equal(
      releaseScript(stateDir, jumps),
      [
        "delete rule inet corral_guard allow handle 7",
        `add chain inet corral_guard ${own}`,
        `flush chain inet corral_guard ${own}`,
        `delete chain inet corral_guard ${own}`,
        "",
      ].join("\n"),
    );
  });
});

test("parseAllowanceJumps reads nft's JSON listing of the dispatch chain", () => {
  const listing = JSON.stringify({
    nftables: [
      { metainfo: { version: "1.0.6", json_schema_version: 1 } },
      { chain: { family: "inet", table: "corral_guard", name: "allow", handle: 1 } },
      { rule: { family: "inet", table: "corral_guard", chain: "allow", handle: 12, comment: "/tmp/corral-t-abc", expr: [{ jump: { target: "allow_0123456789ab" } }] } },
      { rule: { family: "inet", table: "corral_guard", chain: "allow", handle: 14, expr: [{ jump: { target: "allow_ba9876543210" } }] } },
    ],
  });
  assert.deepEqual(parseAllowanceJumps(listing), [
    { handle: 12, target: "allow_0123456789ab", owner: "/tmp/corral-t-abc" },
    { handle: 14, target: "allow_ba9876543210", owner: undefined },
  ]);
});

test("resolversOf: nameserver lines, IPv6 zones dropped, junk and repeats skipped", () => {
  const conf = "# generated\nsearch example.org\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver  10.255.255.53 \nnameserver not-an-address\nnameserver 127.0.0.53\n";
  assert.deepEqual(resolversOf(conf), ["127.0.0.53", "fe80::1", "10.255.255.53"]);
});

test("formatHostAccess spells each entry one way, whatever way it was written", () => {
  assert.deepEqual(
    ["127.0.0.1:5432", "tcp/127.0.0.1:5432", "udp/[::1]:53", "[FD00::2]:22", "6379", "udp/8000-8010", "80-80"].map((e) => formatHostAccess(access(e))),
    ["tcp/127.0.0.1:5432", "tcp/127.0.0.1:5432", "udp/[::1]:53", "tcp/[fd00::2]:22", "tcp/6379", "udp/8000-8010", "tcp/80"],
  );
});
