// The CLI's networking: `corral up --net …` writing the default group's network (checked by the real config
// parser), the banner lines per group (the non-root sentence for TAP modes), and `vm network`'s list flags
// and rows (src/cli/up-network.ts, src/cli/network-commands.ts).
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { parseDaemonConfig } from "../../src/daemon/config.ts";
import { networkBodyFlags, networkRows, policyListFlag } from "../../src/cli/network-commands.ts";
import { groupNetworkLines, upConfigYaml } from "../../src/cli/up-network.ts";
import { formatCidr, formatIpv4 } from "../../src/net/cidr.ts";

const parsed = (yaml: string | undefined) => parseDaemonConfig(yaml ?? "", "up");

describe("corral up --net", () => {
  test("no --net: the built-in defaults; --net user: the same groups", () => {
    assert.equal(upConfigYaml({}), undefined);
    assert.deepEqual(parsed(upConfigYaml({ net: "user" })).hostGroups, parsed(undefined).hostGroups);
  });

  test("--net bridge --cidr SUBNET: the bridge takes .1, as slicer new writes it; --range, --allow, --drop carried", () => {
    const group = parsed(
      upConfigYaml({ net: "bridge", cidr: "192.168.137.0/24", range: "192.168.137.20-192.168.137.80", allow: ["0.0.0.0/0"], drop: ["192.168.1.0/24,10.0.0.0/8"] }),
    ).hostGroups[0]!;
    assert.equal(group.name, "sbox");
    assert.equal(group.warmPool, 2);
    const network = group.network;
    assert.ok(network.mode === "bridge");
    assert.equal(`${formatIpv4(network.gateway.address)}/${network.gateway.prefixLength}`, "192.168.137.1/24");
    assert.equal(network.bridge, "brsbox0");
    assert.deepEqual(network.range, { first: ((192 << 24) >>> 0) + (168 << 16) + (137 << 8) + 20, last: ((192 << 24) >>> 0) + (168 << 16) + (137 << 8) + 80 });
    assert.deepEqual(
      network.policy.drop.map((e) => e.text),
      ["192.168.1.0/24", "10.0.0.0/8"],
    );
    // The bridge's own address is taken as given.
    const given = parsed(upConfigYaml({ net: "bridge", cidr: "10.9.0.7/16" })).hostGroups[0]!.network;
    assert.ok(given.mode === "bridge" && formatIpv4(given.gateway.address) === "10.9.0.7");
  });

  test("--net isolated, with or without --range", () => {
    const derived = parsed(upConfigYaml({ net: "isolated" })).hostGroups[0]!.network;
    assert.ok(derived.mode === "isolated" && derived.rangeDerived);
    const given = parsed(upConfigYaml({ net: "isolated", range: "169.254.100.0/22", allow: ["192.168.222.1:3128"] })).hostGroups[0]!.network;
    assert.ok(given.mode === "isolated" && formatCidr(given.range) === "169.254.100.0/22" && given.policy.allow.length === 1);
  });

  test("flag mistakes are sentences", () => {
    assert.throws(() => upConfigYaml({ net: "macvtap" }), /Invalid --net "macvtap": use user, bridge or isolated/);
    assert.throws(() => upConfigYaml({ net: "bridge" }), /--net bridge needs --cidr/);
    assert.throws(() => upConfigYaml({ net: "isolated", cidr: "10.0.0.0/24" }), /--cidr is for --net bridge/);
    assert.throws(() => upConfigYaml({ cidr: "10.0.0.0/24" }), /--cidr needs --net bridge or --net isolated/);
    assert.throws(() => upConfigYaml({ net: "user", allow: ["1.1.1.1"] }), /--allow is for --net bridge or --net isolated/);
    // What the flags cannot see, the config parser names.
    assert.throws(() => parsed(upConfigYaml({ net: "bridge", cidr: "192.168.137.0/31" })), /network\.gateway "192\.168\.137\.0\/31" leaves no address for a VM/);
  });

  test("the banner: one line per group; a TAP mode under a non-root daemon says what it needs", () => {
    const groups = parseDaemonConfig(
      "config:\n  host_groups:\n    - name: sbox\n    - name: vm\n      network: { gateway: 192.168.137.1/24 }\n    - name: sandbox\n      network: { mode: isolated, range: 169.254.100.0/22 }\n",
      "c.yaml",
    ).hostGroups;
    assert.deepEqual(groupNetworkLines(groups, 0), [
      "  network     sbox: user-mode (no root needed; switch with --net bridge or --net isolated)",
      "  network     vm: bridge brvm0, gateway 192.168.137.1/24",
      "  network     sandbox: isolated, /30 blocks of 169.254.100.0/22",
    ]);
    const lines = groupNetworkLines(groups, 1000);
    assert.equal(lines.length, 5);
    assert.equal(
      lines[4],
      '  Host group "sandbox" (network.mode isolated) is unavailable: the daemon runs as uid 1000, not root: isolated mode makes a network namespace, a veth pair and nftables rules per VM (CAP_SYS_ADMIN and CAP_NET_ADMIN). Run the daemon as root, or set config.host_groups[2].network.mode: user',
    );
    assert.match(
      lines[2]!,
      /^ {2}Host group "vm" \(network\.mode bridge\) is unavailable: .*bridge mode makes a bridge, a TAP per VM and nftables rules \(CAP_NET_ADMIN\)\. .*config\.host_groups\[1\]\.network\.mode: user$/,
    );
  });
});

describe("corral vm network", () => {
  test("list flags: entries (repeated or comma-separated), none, group", () => {
    assert.equal(policyListFlag(undefined, "allow"), undefined);
    assert.deepEqual(policyListFlag(["1.1.1.1,10.0.0.0/8", "192.168.222.1:3128"], "allow"), ["1.1.1.1", "10.0.0.0/8", "192.168.222.1:3128"]);
    assert.deepEqual(policyListFlag(["none"], "allow"), []);
    assert.equal(policyListFlag(["group"], "drop"), null);
    assert.throws(() => policyListFlag(["none", "1.1.1.1"], "drop"), /--drop takes entries, or "none" alone, or "group" alone/);
  });

  test("create and fork: --allow/--drop become Slicer's network body; none is [], group is refused", () => {
    assert.equal(networkBodyFlags({}), undefined);
    assert.deepEqual(networkBodyFlags({ allow: ["none"] }), { allow: [] });
    assert.deepEqual(networkBodyFlags({ drop: ["10.0.0.0/8,192.168.1.0/24"] }), { drop: ["10.0.0.0/8", "192.168.1.0/24"] });
    assert.throws(() => networkBodyFlags({ allow: ["group"] }), /leave the flag out/);
  });

  test("rows: mode and address, MAC, device, ports, effective lists marked when the VM's own", () => {
    const rows = networkRows({
      mode: "bridge",
      policy_source: "override",
      host_group: { allow: [], drop: ["192.168.1.0/24"] },
      override: { allow: [] },
      effective: { allow: [], drop: ["192.168.1.0/24"] },
      deny_outgoing: true,
      port_map: { "22": 20022, "8080": 20023 },
      interface: { mode: "bridge", mac: "52:54:00:00:00:02", address: "192.168.137.2", prefix_length: 24, gateway: "192.168.137.1", bridge: "brvm0", target_dev: "vmtap0" },
    });
    assert.deepEqual(rows, [
      ["network", "bridge, 192.168.137.2/24 via 192.168.137.1"],
      ["mac", "52:54:00:00:00:02"],
      ["device", "vmtap0 on bridge brvm0"],
      ["ports", "20022->22, 20023->8080"],
      ["allow", "- (this VM's)"],
      ["drop", "192.168.1.0/24"],
      ["outgoing", "denied (new connections)"],
    ]);
  });
});
