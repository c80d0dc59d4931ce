// Host groups' `network:` and `dns_servers`, config.network.port_range and vhost: every field, every default,
// every refusal with its YAML path, and the overlap matrix between groups (src/daemon/config-network.ts).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, parseDaemonConfig, type DaemonConfig, type HostGroupConfig } from "../../src/daemon/config.ts";
import { defaultBridgeName, deriveIsolatedRange } from "../../src/daemon/config-network.ts";
import { formatCidr, parseIpv4 } from "../../src/net/cidr.ts";
import type { GroupNetwork } from "../../src/net/network-config.ts";

const ip = (text: string): number => parseIpv4(text) as number;

function problemsOf(text: string): readonly string[] {
  try {
    parseDaemonConfig(text, "c.yaml");
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems;
  }
  assert.fail("expected the configuration to be rejected");
}

/** One YAML line per group (flow mappings), under config.host_groups. */
const yaml = (...groups: string[]): string => `config:\n  host_groups:\n${groups.map((g) => `    - ${g}\n`).join("")}`;
const groupsOf = (...groups: string[]): readonly HostGroupConfig[] => parseDaemonConfig(yaml(...groups), "c.yaml").hostGroups;
const networkOf = (group: string): GroupNetwork => groupsOf(group)[0]!.network;
const problems = (...groups: string[]): readonly string[] => problemsOf(yaml(...groups));

describe("host group network: bridge mode (Slicer's default)", () => {
  test("every field of Slicer's bridge example is read", () => {
    const text = `config:
  host_groups:
    - name: vm
      dns_servers: ["192.168.137.1", " 1.1.1.1 "]
      network:
        bridge: brvm0
        tap_prefix: vmtap
        gateway: 192.168.137.1/24
        range: 192.168.137.20-192.168.137.80
        addresses: [192.168.137.2/24, 192.168.137.3]
        drop: ["192.168.1.0/24"]
        allow: ["0.0.0.0/0", "192.168.222.1:3128"]
`;
    const group = parseDaemonConfig(text, "c.yaml").hostGroups[0]!;
    assert.deepEqual(group.dnsServers, ["192.168.137.1", "1.1.1.1"]);
    const network = group.network;
    assert.equal(network.mode, "bridge");
    if (network.mode !== "bridge") return;
    assert.equal(network.bridge, "brvm0");
    assert.equal(network.tapPrefix, "vmtap");
    assert.equal(network.tapPrefixDerived, false);
    assert.deepEqual(network.gateway, { address: ip("192.168.137.1"), prefixLength: 24 });
    assert.deepEqual(network.range, { first: ip("192.168.137.20"), last: ip("192.168.137.80") });
    assert.deepEqual(network.addresses, [ip("192.168.137.2"), ip("192.168.137.3")]);
    assert.deepEqual(
      network.policy.drop.map((e) => e.text),
      ["192.168.1.0/24"],
    );
    assert.deepEqual(
      network.policy.allow.map((e) => [e.text, e.port]),
      [
        ["0.0.0.0/0", undefined],
        ["192.168.222.1:3128", 3128],
      ],
    );
    assert.ok(Object.isFrozen(network) && Object.isFrozen(group.dnsServers));
  });

  test("mode may be written or left out; defaults: bridge br<name>0, a derived tap prefix, the whole subnet, no policy", () => {
    const implicit = networkOf("{ name: web, network: { gateway: 10.20.0.1/24 } }");
    const explicit = networkOf('{ name: web, network: { mode: "bridge", gateway: 10.20.0.1/24 } }');
    assert.deepEqual(implicit, explicit);
    assert.deepEqual(implicit, {
      mode: "bridge",
      bridge: "brweb0",
      tapPrefix: "c-0-",
      tapPrefixDerived: true,
      gateway: { address: ip("10.20.0.1"), prefixLength: 24 },
      range: undefined,
      addresses: [],
      policy: { allow: [], drop: [] },
    });
  });

  test("the default bridge name is cut to 15 characters and still ends in 0", () => {
    assert.equal(defaultBridgeName("a-very-long-group-name"), "bra-very-long-0");
    assert.equal(defaultBridgeName("a-very-long-group-name").length, 15);
    const network = networkOf("{ name: a-very-long-group-name, network: { gateway: 10.20.0.1/24 } }");
    assert.equal(network.mode === "bridge" && network.bridge, "bra-very-long-0");
  });

  test("a CIDR range is read as all its addresses", () => {
    const network = networkOf("{ name: web, network: { gateway: 10.20.0.1/24, range: 10.20.0.64/26 } }");
    assert.deepEqual(network.mode === "bridge" && network.range, { first: ip("10.20.0.64"), last: ip("10.20.0.127") });
  });

  test("each bad bridge field is named with what is wrong and what to write", () => {
    assert.deepEqual(problems("{ name: vm, network: { bridge: brvm0 } }"), [
      "config.host_groups[0].network.gateway is required in bridge mode (Slicer's default mode): the bridge's address and the VMs' subnet, e.g. \"192.168.137.1/24\"",
    ]);
    assert.deepEqual(problems("{ name: vm, network: { gateway: 192.168.137.0/24 } }"), [
      'config.host_groups[0].network.gateway "192.168.137.0/24" is the subnet\'s network address: give the bridge\'s own address, e.g. "192.168.137.1/24"',
    ]);
    assert.deepEqual(problems("{ name: vm, network: { gateway: 192.168.137.255/24 } }"), [
      'config.host_groups[0].network.gateway "192.168.137.255/24" is the subnet\'s broadcast address: give the bridge\'s own address, e.g. "192.168.137.1/24"',
    ]);
    assert.deepEqual(problems("{ name: vm, network: { gateway: 192.168.137.1/31 } }"), [
      'config.host_groups[0].network.gateway "192.168.137.1/31" leaves no address for a VM: give at most a /30, e.g. "192.168.137.1/24"',
    ]);
    assert.deepEqual(problems("{ name: vm, network: { gateway: 192.168.137.1 } }"), [
      'config.host_groups[0].network.gateway "192.168.137.1" is not an IPv4 address with a prefix length, e.g. "192.168.137.1/24"',
    ]);
    assert.deepEqual(problems('{ name: vm, network: { gateway: "fd00::1/64" } }'), ['config.host_groups[0].network.gateway "fd00::1/64" is IPv6: only IPv4 is supported']);
    assert.deepEqual(problems("{ name: vm, network: { gateway: 192.168.137.1/24, tap_prefix: averyverylongprefix } }"), [
      'config.host_groups[0].network.tap_prefix "averyverylongprefix" is too long: at most 10 characters (TAP names are at most 15, with up to 5 digits)',
    ]);
    assert.deepEqual(problems("{ name: vm, network: { gateway: 192.168.137.1/24, tap_prefix: vmtap1 } }"), [
      'config.host_groups[0].network.tap_prefix "vmtap1" must not end in a digit (the device number follows it), e.g. "vmtap1-"',
    ]);
    assert.deepEqual(problems('{ name: vm, network: { gateway: 192.168.137.1/24, tap_prefix: "vm/x" } }'), [
      'config.host_groups[0].network.tap_prefix "vm/x" must start with a letter and hold only letters, digits, ".", "-" or "_"',
    ]);
    assert.deepEqual(problems("{ name: vm, network: { gateway: 192.168.137.1/24, bridge: this-is-too-long0 } }"), [
      'config.host_groups[0].network.bridge "this-is-too-long0" is not an interface name: at most 15 letters, digits, ".", "-" or "_"',
    ]);
  });

  test("range and addresses must lie inside the gateway's subnet, on usable addresses", () => {
    assert.deepEqual(problems("{ name: vm, network: { gateway: 192.168.137.1/24, range: 10.0.0.2-10.0.0.9 } }"), [
      'config.host_groups[0].network.range "10.0.0.2-10.0.0.9" is outside the gateway\'s subnet "192.168.137.0/24"',
    ]);
    assert.deepEqual(problems("{ name: vm, network: { gateway: 192.168.137.1/24, range: 192.168.137.0/24 } }"), [
      'config.host_groups[0].network.range "192.168.137.0/24" includes the subnet\'s network or broadcast address',
    ]);
    assert.deepEqual(problems("{ name: vm, network: { gateway: 192.168.137.1/24, range: 192.168.137.9-192.168.137.3 } }"), [
      'config.host_groups[0].network.range "192.168.137.9-192.168.137.3" ends before it starts',
    ]);
    assert.deepEqual(
      problems(
        "{ name: vm, network: { gateway: 192.168.137.1/24, addresses: [192.168.137.2/24, 192.168.137.1/24, 10.0.0.5/24, 192.168.137.2, 192.168.137.255, 192.168.137.7/25, nope] } }",
      ),
      [
        'config.host_groups[0].network.addresses[1] "192.168.137.1/24" is the gateway\'s own address',
        'config.host_groups[0].network.addresses[2] "10.0.0.5/24" is outside the gateway\'s subnet "192.168.137.0/24"',
        'config.host_groups[0].network.addresses[3] "192.168.137.2" is listed twice',
        'config.host_groups[0].network.addresses[4] "192.168.137.255" is the subnet\'s broadcast address',
        'config.host_groups[0].network.addresses[5] "192.168.137.7/25" has prefix length 25, the gateway\'s subnet "192.168.137.0/24" has 24',
        'config.host_groups[0].network.addresses[6] "nope" is not an IPv4 address, e.g. "192.168.137.2/24"',
      ],
    );
  });
});

describe("host group network: isolated mode", () => {
  test("Slicer's isolated example is read", () => {
    const network = networkOf('{ name: sandbox, network: { mode: isolated, range: 169.254.100.0/22, drop: ["192.168.1.0/24"], allow: ["0.0.0.0/0"] } }');
    assert.equal(network.mode, "isolated");
    if (network.mode !== "isolated") return;
    assert.equal(formatCidr(network.range), "169.254.100.0/22");
    assert.equal(network.rangeDerived, false);
    assert.deepEqual(
      network.policy.drop.map((e) => e.text),
      ["192.168.1.0/24"],
    );
    assert.deepEqual(
      network.policy.allow.map((e) => e.text),
      ["0.0.0.0/0"],
    );
  });

  test("without range: a /22 of 169.254.0.0/16 derived from the name, the same every time, marked derived", () => {
    const a = networkOf("{ name: sandbox, network: { mode: isolated } }");
    const b = networkOf("{ name: sandbox, network: { mode: isolated } }");
    assert.deepEqual(a, b);
    assert.ok(a.mode === "isolated" && a.rangeDerived);
    if (a.mode !== "isolated") return;
    assert.equal(a.range.prefixLength, 22);
    assert.equal(a.range.network >>> 16, ip("169.254.0.0") >>> 16);
    assert.deepEqual(a.policy, { allow: [], drop: [] });
  });

  test("a derived range never is the metadata service's /22 and skips ranges other groups use", () => {
    const metadata = { network: ip("169.254.168.0"), prefixLength: 22 };
    const first = deriveIsolatedRange("x", [])!;
    // Whatever the hash picks, taking it (and the metadata /22) moves the next pick on, never onto them.
    const second = deriveIsolatedRange("x", [metadata, first])!;
    assert.notDeepEqual(second, first);
    assert.notEqual(formatCidr(second), "169.254.168.0/22");
    for (let n = 0; n < 200; n++) assert.notEqual(formatCidr(deriveIsolatedRange(`g${n}`, [metadata])!), "169.254.168.0/22");
    // All 64 /22s taken: nothing left.
    assert.equal(deriveIsolatedRange("x", [{ network: ip("169.254.0.0"), prefixLength: 16 }]), undefined);
    // In a config: a derived range steers clear of a written one that holds its first pick.
    const picked = formatCidr(deriveIsolatedRange("auto", [metadata])!);
    const groups = groupsOf(`{ name: fixed, network: { mode: isolated, range: ${picked} } }`, "{ name: auto, network: { mode: isolated } }");
    const derived = groups[1]!.network;
    assert.ok(derived.mode === "isolated" && derived.rangeDerived && formatCidr(derived.range) !== picked);
  });

  test("bad isolated fields", () => {
    assert.deepEqual(problems("{ name: s, network: { mode: isolated, range: 169.254.100.0/31 } }"), [
      'config.host_groups[0].network.range "169.254.100.0/31" must be at least a /30 (one VM)',
    ]);
    assert.deepEqual(problems("{ name: s, network: { mode: isolated, range: 169.254.100.1/22 } }"), [
      'config.host_groups[0].network.range "169.254.100.1/22" has host bits set: its network is "169.254.100.0/22"',
    ]);
    assert.deepEqual(problems("{ name: s, network: { mode: isolated, range: 169.254.100.0-169.254.100.9 } }"), [
      'config.host_groups[0].network.range "169.254.100.0-169.254.100.9" must be a CIDR in isolated mode, e.g. "169.254.100.0/22" (each VM takes a /30 block of it)',
    ]);
    assert.deepEqual(problems('{ name: s, network: { mode: isolated, allow: ["::/0"] } }'), [
      'config.host_groups[0].network.allow[0] "::/0" is IPv6: only IPv4 entries are supported',
    ]);
    assert.deepEqual(problems('{ name: s, network: { mode: isolated, drop: ["10.0.0.1/8", "10.0.0.1:99999"] } }'), [
      'config.host_groups[0].network.drop[0] "10.0.0.1/8" has host bits set: its network is "10.0.0.0/8"',
    ]);
    assert.deepEqual(problems("{ name: s, network: { mode: isolated, bridge: brx, gateway: 10.0.0.1/24, tap_prefix: t, addresses: [] } }"), [
      'config.host_groups[0].network.bridge is only for bridge mode (mode is "isolated")',
      'config.host_groups[0].network.tap_prefix is only for bridge mode (mode is "isolated")',
      'config.host_groups[0].network.gateway is only for bridge mode (mode is "isolated")',
      'config.host_groups[0].network.addresses is only for bridge mode (mode is "isolated")',
    ]);
  });
});

describe("host group network: user mode and modes Corral does not have", () => {
  test("no network: or mode: user is user mode; dns_servers default to none", () => {
    assert.deepEqual(networkOf("{ name: a }"), { mode: "user" });
    assert.deepEqual(networkOf("{ name: a, network: { mode: user } }"), { mode: "user" });
    assert.deepEqual(groupsOf("{ name: a }")[0]!.dnsServers, []);
  });

  test("user mode takes none of the TAP modes' fields", () => {
    assert.deepEqual(problems('{ name: a, network: { mode: user, gateway: 10.0.0.1/24, range: 10.0.0.0/24, allow: ["1.1.1.1"] } }'), [
      'config.host_groups[0].network.gateway is only for bridge mode (mode is "user")',
      'config.host_groups[0].network.range is only for bridge or isolated mode (mode is "user")',
      'config.host_groups[0].network.allow is only for bridge or isolated mode (mode is "user")',
    ]);
  });

  test("macvtap, nat, unknown modes and CNI networks are refused with a sentence", () => {
    assert.deepEqual(problems("{ name: a, network: { mode: macvtap } }"), [
      'config.host_groups[0].network.mode "macvtap" is not supported (Slicer\'s macvtap mode): use "user", "bridge" or "isolated"',
    ]);
    assert.deepEqual(problems("{ name: a, network: { mode: macvtap, parent: eth0 } }"), [
      'config.host_groups[0].network.mode "macvtap" is not supported (Slicer\'s macvtap mode): use "user", "bridge" or "isolated"',
    ]);
    assert.deepEqual(problems("{ name: a, network: { mode: nat } }"), [
      'config.host_groups[0].network.mode "nat" is not supported (Slicer for Mac\'s mode): use "user", "bridge" or "isolated"',
    ]);
    assert.deepEqual(problems("{ name: a, network: { mode: routed } }"), ['config.host_groups[0].network.mode "routed" is not supported: use "user", "bridge" or "isolated"']);
    assert.deepEqual(problems("{ name: a, network_name: mynet }"), [
      'config.host_groups[0].network_name "mynet" names a CNI network, which Corral does not support: give a network: section with mode "user", "bridge" or "isolated"',
    ]);
    assert.match(problems("{ name: a, network: { gatway: 10.0.0.1/24 } }").join("\n"), /config\.host_groups\[0\]\.network\.gatway is not a known setting/);
  });

  test("dns_servers must be IPv4 addresses", () => {
    assert.deepEqual(problems('{ name: a, dns_servers: ["1.1.1.1", "dns.example", "::1"] }'), [
      'config.host_groups[0].dns_servers[1] "dns.example" is not an IPv4 address, e.g. "1.1.1.1"',
      'config.host_groups[0].dns_servers[2] "::1" is not an IPv4 address, e.g. "1.1.1.1"',
    ]);
  });
});

describe("overlaps between host groups refuse the config", () => {
  const bridge = (name: string, gateway: string, extra = "") => `{ name: ${name}, network: { gateway: ${gateway}${extra} } }`;
  const isolated = (name: string, range: string) => `{ name: ${name}, network: { mode: isolated, range: ${range} } }`;

  test("isolated × isolated (the plan's message)", () => {
    assert.deepEqual(problems(isolated("a", "169.254.100.0/22"), isolated("b", "169.254.100.0/23")), [
      'config.host_groups[1].network.range "169.254.100.0/23" overlaps config.host_groups[0].network.range "169.254.100.0/22": give each host group its own range',
    ]);
  });

  test("bridge × bridge, bridge × isolated, isolated × bridge", () => {
    assert.deepEqual(problems(bridge("a", "10.1.0.1/16"), bridge("b", "10.1.7.1/24")), [
      'config.host_groups[1].network.gateway "10.1.7.1/24" overlaps config.host_groups[0].network.gateway "10.1.0.1/16": give each host group its own subnet',
    ]);
    assert.deepEqual(problems(bridge("a", "169.254.100.1/24"), isolated("b", "169.254.100.0/22")), [
      'config.host_groups[1].network.range "169.254.100.0/22" overlaps config.host_groups[0].network.gateway "169.254.100.1/24": give each host group its own range',
    ]);
    assert.deepEqual(problems(isolated("a", "169.254.100.0/22"), bridge("b", "169.254.101.1/24")), [
      'config.host_groups[1].network.gateway "169.254.101.1/24" overlaps config.host_groups[0].network.range "169.254.100.0/22": give each host group its own subnet',
    ]);
  });

  test("every overlapping pair of three is named once; neighbours that only touch are fine", () => {
    assert.deepEqual(problems(isolated("a", "169.254.0.0/22"), isolated("b", "169.254.0.0/24"), isolated("c", "169.254.1.0/24")), [
      'config.host_groups[1].network.range "169.254.0.0/24" overlaps config.host_groups[0].network.range "169.254.0.0/22": give each host group its own range',
      'config.host_groups[2].network.range "169.254.1.0/24" overlaps config.host_groups[0].network.range "169.254.0.0/22": give each host group its own range',
    ]);
    const fine = groupsOf(isolated("a", "169.254.0.0/22"), isolated("b", "169.254.4.0/22"), bridge("c", "10.0.0.1/24"), bridge("d", "10.0.1.1/24"), "{ name: e }", "{ name: f }");
    assert.equal(fine.length, 6);
  });

  test("two groups may not share a bridge or a tap prefix", () => {
    assert.deepEqual(problems(bridge("a", "10.0.0.1/24", ", bridge: br0, tap_prefix: t"), bridge("b", "10.0.1.1/24", ", bridge: br0, tap_prefix: t")), [
      'config.host_groups[1].network.bridge "br0" is also config.host_groups[0]\'s: give each host group its own',
      'config.host_groups[1].network.tap_prefix "t" is also config.host_groups[0]\'s: give each host group its own',
    ]);
  });
});

describe("config.network.port_range and vhost", () => {
  const network = (text: string): DaemonConfig["network"] => parseDaemonConfig(`config:\n  network:\n${text}`, "c.yaml").network;

  test("defaults: TTstack's 20000-29999 and vhost auto", () => {
    const parsed = parseDaemonConfig("", "c.yaml").network;
    assert.deepEqual([parsed.portRange, parsed.vhost], [{ first: 20000, last: 29999 }, "auto"]);
  });

  test("both are read", () => {
    const parsed = network('    port_range: "30000-30099"\n    vhost: off\n');
    assert.deepEqual([parsed.portRange, parsed.vhost], [{ first: 30000, last: 30099 }, "off"]);
    assert.equal(network("    vhost: on\n").vhost, "on");
  });

  test("bad values are named", () => {
    for (const bad of ["3-2", "0-10", "1-70000", "20000", "a-b"]) {
      assert.deepEqual(problemsOf(`config:\n  network:\n    port_range: "${bad}"\n`), [
        `config.network.port_range "${bad}" must be FIRST-LAST with 1 ≤ FIRST ≤ LAST ≤ 65535, e.g. "20000-29999"`,
      ]);
    }
    assert.deepEqual(problemsOf("config:\n  network:\n    vhost: maybe\n"), ['config.network.vhost must be one of "auto", "on", "off", got "maybe"']);
  });
});
