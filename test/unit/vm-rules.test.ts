// The tables inside an isolated VM's namespace (src/net/vm-rules.ts) as literal text, and checked by nft itself
// (`nft -c -f` in a throwaway `unshare --net` child, so the host's ruleset is never touched).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { isProblem, parseIpv4, type EgressEntry } from "../../src/net/cidr.ts";
import { parseEgressList } from "../../src/net/policy.ts";
import { digestInListing, expectedDigests, guardTable, policyTable, vmRulesScript, type VmRulesInput } from "../../src/net/vm-rules.ts";

function list(entries: string[]): EgressEntry[] {
  const parsed = parseEgressList(entries, "test");
  if (isProblem(parsed)) throw new Error(parsed.problem);
  return parsed;
}

const block = { network: parseIpv4("169.254.100.0")!, gateway: parseIpv4("169.254.100.1")!, address: parseIpv4("169.254.100.2")! };
const input: VmRulesInput = {
  block,
  mac: "52:54:00:AB:cd:01",
  dns: ["8.8.8.8", "169.254.100.1", "2001:db8::1"],
  policy: { drop: list(["0.0.0.0/0"]), allow: list(["192.168.222.1:3128"]) },
  denyOutgoing: false,
  guestPorts: [8080, 22, 22],
};

const nftUsable = process.getuid?.() === 0 && spawnSync("unshare", ["--net", "nft", "list", "ruleset"]).status === 0;

/** `nft -c -f -` in a private network namespace: nft's own parser and the kernel's checks, nothing loaded. */
function nftCheck(script: string): { status: number | null; stderr: string } {
  const result = spawnSync("unshare", ["--net", "nft", "-c", "-f", "-"], { input: script, encoding: "utf8" });
  return { status: result.status, stderr: result.stderr };
}

describe("guardTable", () => {
  test("pins the anti-spoof guard: the VM's MAC and address out of tap0, no IPv6, nobody posing as the VM", () => {
    const body = [
      "\tchain prerouting {",
      "\t\ttype filter hook prerouting priority -200; policy accept;",
      "\t\tether type ip6 drop",
      '\t\tiifname "tap0" ether saddr != 52:54:00:ab:cd:01 drop',
      '\t\tiifname "tap0" ether type != { ip, arp } drop',
      '\t\tiifname "tap0" arp saddr ether != 52:54:00:ab:cd:01 drop',
      '\t\tiifname "tap0" arp saddr ip != 169.254.100.2 drop',
      '\t\tiifname "tap0" ether type ip ip saddr != 169.254.100.2 drop',
      '\t\tiifname "veth0" ether type ip ip saddr 169.254.100.2 drop',
      '\t\tiifname "veth0" ether type arp arp saddr ip 169.254.100.2 drop',
      "\t}",
      "\tchain output {",
      "\t\ttype filter hook output priority -200; policy accept;",
      "\t\tether type ip6 drop",
      "\t}",
    ];
    const script = guardTable(input);
    assert.equal(
      script,
      ["table bridge corral_vm", "delete table bridge corral_vm", "table bridge corral_vm {", `\tcomment "corral ${expectedDigests(input).bridge}"`, ...body, "}", ""].join("\n"),
    );
  });

  test("refuses a MAC that is not six hex pairs (it is written into the rules)", () => {
    assert.throws(() => guardTable({ ...input, mac: "52:54:00:ab:cd:01 accept" }), /Cannot write rules for MAC/);
  });
});

describe("policyTable", () => {
  test("pins forward (replies, the VM's new connections to egress, mapped ports in) and egress in its order", () => {
    assert.equal(
      policyTable(input),
      [
        "table inet corral_vm",
        "delete table inet corral_vm",
        "table inet corral_vm {",
        `\tcomment "corral ${expectedDigests(input).inet}"`,
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy drop;",
        "\t\tct state established,related accept",
        "\t\tct state invalid drop",
        "\t\tip saddr 169.254.100.2 jump egress",
        "\t\tip daddr 169.254.100.2 tcp dport { 22, 8080 } ct state new accept",
        "\t}",
        "\tchain egress {",
        "\t\tip daddr { 8.8.8.8, 169.254.100.1 } meta l4proto { tcp, udp } th dport 53 accept",
        "\t\tip daddr 192.168.222.1/32 meta l4proto { tcp, udp } th dport 3128 accept",
        "\t\tip daddr 169.254.169.254/32 drop",
        "\t\tip daddr 255.255.255.255/32 drop",
        "\t\tip daddr 169.254.100.0/30 drop",
        "\t\tip daddr 224.0.0.0/4 drop",
        "\t\tip daddr 0.0.0.0/0 drop",
        "\t\taccept",
        "\t}",
        "}",
        "",
      ].join("\n"),
    );
  });

  test("deny_outgoing comes first, before DNS; no port map means no way in; one resolver needs no set", () => {
    const text = policyTable({ ...input, denyOutgoing: true, guestPorts: [], dns: ["1.1.1.1"], policy: { allow: [], drop: [] } });
    assert.match(text, /\tchain egress \{\n\t\tct state new drop\n\t\tip daddr 1\.1\.1\.1 meta l4proto \{ tcp, udp \} th dport 53 accept\n/);
    assert.doesNotMatch(text, /dport \{ 22|ip daddr 169\.254\.100\.2/);
    assert.doesNotMatch(policyTable({ ...input, dns: [] }), /dport 53/);
  });

  test("an allow entry naming the gateway opens it; metadata stays dropped under allow 0.0.0.0/0", () => {
    const text = policyTable({ ...input, policy: { drop: [], allow: list(["0.0.0.0/0", "169.254.100.1:3128"]) } });
    const egress = text.slice(text.indexOf("chain egress"));
    assert.ok(egress.indexOf("169.254.100.1/32 meta l4proto { tcp, udp } th dport 3128 accept") < egress.indexOf("169.254.100.0/30 drop"));
    assert.ok(egress.indexOf("169.254.169.254/32 drop") < egress.indexOf("0.0.0.0/0 accept"));
    assert.ok(egress.indexOf("224.0.0.0/4 drop") < egress.indexOf("0.0.0.0/0 accept"), "multicast goes to the host's listeners: guarded");
    const mdns = policyTable({ ...input, policy: { drop: [], allow: list(["224.0.0.251:5353"]) } });
    assert.ok(mdns.indexOf("224.0.0.251/32 meta l4proto { tcp, udp } th dport 5353 accept") < mdns.indexOf("224.0.0.0/4 drop"), "named, it passes");
  });

  test("refuses a guest port out of range", () => {
    assert.throws(() => policyTable({ ...input, guestPorts: [0] }), /guest port 0/);
    assert.throws(() => policyTable({ ...input, guestPorts: [65536] }), /guest port 65536/);
  });
});

describe("digests", () => {
  test("change with the policy, not with an equal input; listing's comment is read back", () => {
    const other = { ...input, policy: { drop: [], allow: [] } };
    assert.equal(expectedDigests(input).inet, expectedDigests({ ...input }).inet);
    assert.notEqual(expectedDigests(input).inet, expectedDigests(other).inet);
    assert.equal(expectedDigests(input).bridge, expectedDigests(other).bridge, "the guard does not depend on the policy");
    assert.notEqual(expectedDigests(input).bridge, expectedDigests({ ...input, mac: "52:54:00:00:00:02" }).bridge);
    assert.equal(digestInListing(policyTable(input)), expectedDigests(input).inet);
    assert.equal(digestInListing("table inet corral_vm {\n}"), undefined);
  });
});

describe("nft accepts the scripts", { skip: nftUsable ? false : "needs root and nft (unshare --net nft list ruleset failed)" }, () => {
  test("both tables, with deny_outgoing, ports, several resolvers, guards and port entries", () => {
    const checked = nftCheck(
      vmRulesScript({ ...input, denyOutgoing: true, policy: { drop: list(["10.0.0.0/8", "0.0.0.0/0"]), allow: list(["10.1.0.0/16:443", "169.254.169.254"]) } }),
    );
    assert.equal(checked.status, 0, checked.stderr);
  });

  test("the smallest input: no ports, no DNS, empty policy", () => {
    const checked = nftCheck(vmRulesScript({ ...input, dns: [], guestPorts: [], policy: { allow: [], drop: [] } }));
    assert.equal(checked.status, 0, checked.stderr);
  });

  test("loading twice replaces (the script is idempotent), and the comment's digest is what nft lists", () => {
    const script = vmRulesScript(input);
    const result = spawnSync("unshare", ["--net", "sh", "-c", 'printf "%s" "$0" | nft -f - && printf "%s" "$0" | nft -f - && nft list table inet corral_vm', script], {
      encoding: "utf8",
    });
    assert.equal(result.status, 0, result.stderr);
    assert.equal(digestInListing(result.stdout), expectedDigests(input).inet);
    assert.equal(result.stdout.match(/chain egress/g)?.length, 1);
  });

  test("a broken script is refused (the check can fail)", () => {
    assert.notEqual(nftCheck(policyTable(input).replace("accept\n\t}", "accept }")).status, 0);
  });
});
