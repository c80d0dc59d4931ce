// The daemon's host tables as literal text (src/net/host-rules.ts), loaded by nft in a namespace of the
// test's own, and the names of devices and aliases (src/net/names.ts).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { parseEgressList } from "../../src/net/policy.ts";
import { deleteHostTablesScript, hostTablesScript, rulesGeneration, type HostRulesInput } from "../../src/net/host-rules.ts";
import { daemonTag, defaultTapPrefix, deviceAlias, deviceName, groupAlias, parseAlias, vethPrefix } from "../../src/net/names.ts";
import type { EgressEntry } from "../../src/net/cidr.ts";

const list = (entries: string[]): EgressEntry[] => {
  const parsed = parseEgressList(entries, "test");
  if ("problem" in parsed) throw new Error(parsed.problem);
  return parsed;
};

const EMPTY: HostRulesInput = {
  tag: "0123abcd",
  stateDir: "/var/lib/corral",
  hostIsolation: true,
  hostAccess: [],
  bridges: [],
  isolatedRanges: [],
  bridgeVms: [],
  isolatedVms: [],
  portMaps: [],
};

const FULL: HostRulesInput = {
  ...EMPTY,
  hostAccess: [
    { protocol: "tcp", address: undefined, ports: [5432, 5432] },
    { protocol: "udp", address: "127.0.0.1", ports: [53, 54] },
    { protocol: "tcp", address: "::1", ports: [1, 1] },
  ],
  bridges: [{ name: "brvm0", subnet: "192.168.137.0/24" }],
  isolatedRanges: ["169.254.100.0/22"],
  bridgeVms: [
    {
      deviceId: 0,
      tap: "vmtap0",
      address: "192.168.137.2",
      mac: "02:fc:00:00:00:01",
      policy: { allow: list(["192.168.222.1:3128"]), drop: list(["0.0.0.0/0"]) },
      denyOutgoing: true,
    },
    { deviceId: 1, tap: "vmtap1", address: "192.168.137.3", mac: "02:fc:00:00:00:02", policy: { allow: [], drop: [] }, denyOutgoing: false },
  ],
  isolatedVms: [{ deviceId: 2, address: "169.254.100.2", hostAllow: [{ cidr: "192.168.137.1/32", port: 3128 }] }],
  portMaps: [{ hostPort: 20000, address: "192.168.137.2", guestPort: 22 }],
};

describe("hostTablesScript", () => {
  test("pins both tables for two bridge VMs, one isolated VM and a port map", () => {
    const generation = rulesGeneration(FULL);
    assert.equal(
      hostTablesScript(FULL),
      `add table inet corral_net_0123abcd
delete table inet corral_net_0123abcd
table inet corral_net_0123abcd {
	comment "corral ${generation} /var/lib/corral"
	set bridges {
		type ifname
		elements = { "brvm0" }
	}
	map vm_egress {
		type ipv4_addr : verdict
		elements = { 192.168.137.2 : jump vm_0, 192.168.137.3 : jump vm_1 }
	}
	map dnat_tcp {
		type inet_service : ipv4_addr . inet_service
		elements = { 20000 : 192.168.137.2 . 22 }
	}
	set deny_new {
		type ipv4_addr
		elements = { 192.168.137.2 }
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local dnat ip to tcp dport map @dnat_tcp
	}
	chain output_nat {
		type nat hook output priority -100; policy accept;
		fib daddr type local dnat ip to tcp dport map @dnat_tcp
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		iifname "ci0123-*" oifname "ci0123-*" drop
		iifname "ci0123-*" oifname @bridges drop
		ip saddr vmap @vm_egress
		iifname @bridges meta nfproto ipv6 drop
		iifname "ci0123-*" meta nfproto ipv6 drop
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname @bridges jump bridge_input
		iifname "ci0123-*" jump isolated_input
	}
	chain bridge_input {
		ct state established,related accept
		ip saddr @deny_new reject with icmpx type admin-prohibited
		icmp type echo-request accept
		meta l4proto tcp th dport 5432 accept
		ip daddr 127.0.0.1 meta l4proto udp th dport 53-54 accept
		meta l4proto tcp reject with tcp reset
		reject with icmpx type admin-prohibited
	}
	chain isolated_input {
		ct state established,related accept
		ip saddr 169.254.100.2 ip daddr 192.168.137.1/32 meta l4proto { tcp, udp } th dport 3128 accept
		meta l4proto tcp reject with tcp reset
		reject with icmpx type admin-prohibited
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 192.168.137.0/24 oifname != "brvm0" masquerade
		ip saddr 169.254.100.0/22 oifname != "ci0123-*" masquerade
		ct status dnat ip saddr 127.0.0.0/8 masquerade
	}
	chain vm_0 {
		ct state new drop
		ip daddr 192.168.222.1/32 meta l4proto { tcp, udp } th dport 3128 accept
		ip daddr 169.254.169.254/32 drop
		ip daddr 0.0.0.0/0 drop
		accept
	}
	chain vm_1 {
		ip daddr 169.254.169.254/32 drop
		accept
	}
}
add table bridge corral_br_0123abcd
delete table bridge corral_br_0123abcd
table bridge corral_br_0123abcd {
	comment "corral ${generation} /var/lib/corral"
	map port_guard {
		type ifname : verdict
		elements = { "vmtap0" : jump guard_0, "vmtap1" : jump guard_1 }
	}
	chain prerouting {
		type filter hook prerouting priority -200; policy accept;
		iifname vmap @port_guard
	}
	chain guard_0 {
		ether saddr != 02:fc:00:00:00:01 drop
		ether type ip6 drop
		arp saddr ether != 02:fc:00:00:00:01 drop
		arp saddr ip != 192.168.137.2 drop
		ether type ip ip saddr != 192.168.137.2 drop
	}
	chain guard_1 {
		ether saddr != 02:fc:00:00:00:02 drop
		ether type ip6 drop
		arp saddr ether != 02:fc:00:00:00:02 drop
		arp saddr ip != 192.168.137.3 drop
		ether type ip ip saddr != 192.168.137.3 drop
	}
}
`,
    );
  });

  test("no bridges: nothing names @bridges (an empty set would still load, but the rules say what exists); empty maps have no elements line", () => {
    const text = hostTablesScript(EMPTY);
    assert.doesNotMatch(text, /@bridges/);
    assert.doesNotMatch(text, /elements/);
    assert.match(text, /chain isolated_input \{\n\t\tct state established,related accept\n\t\tmeta l4proto tcp reject with tcp reset\n/);
  });

  test("host_isolation false opens the host to bridge-mode guests (Slicer's behaviour), deny_outgoing still refused", () => {
    const text = hostTablesScript({ ...FULL, hostIsolation: false });
    assert.match(
      text,
      /chain bridge_input \{\n\t\tct state established,related accept\n\t\tip saddr @deny_new reject with icmpx type admin-prohibited\n\t\ticmp type echo-request accept\n\t\taccept\n\t\}/,
    );
  });

  test("never names the user-mode wall's table; every statement ends its line (nft refuses `stmt }`)", () => {
    for (const text of [hostTablesScript(FULL), hostTablesScript(EMPTY), deleteHostTablesScript("0123abcd")]) {
      assert.doesNotMatch(text, /corral_guard/);
      for (const line of text.split("\n")) if (line.trim() !== "}" && !line.includes("{")) assert.doesNotMatch(line, /\}$/, line);
    }
  });

  test("the generation changes with the content and only with it", () => {
    assert.equal(rulesGeneration(FULL), rulesGeneration({ ...FULL }));
    assert.notEqual(rulesGeneration(FULL), rulesGeneration({ ...FULL, portMaps: [] }));
  });

  const root = process.getuid?.() === 0 && spawnSync("nft", ["--version"]).status === 0;
  test("nft loads both tables twice (idempotent rewrite) and deletes them, in a namespace of the test's own", { skip: root ? false : "needs root and nft" }, () => {
    const nft = (script: string): string => {
      const result = spawnSync("unshare", ["--net", "--", "sh", "-c", "nft -f - && nft list tables"], { input: script, encoding: "utf8" });
      assert.equal(result.status, 0, result.stderr);
      return result.stdout;
    };
    assert.equal(nft(`${hostTablesScript(FULL)}${hostTablesScript(EMPTY)}${hostTablesScript(FULL)}`), "table inet corral_net_0123abcd\ntable bridge corral_br_0123abcd\n");
    assert.equal(nft(`${hostTablesScript(FULL)}${deleteHostTablesScript("0123abcd")}`), "");
  });
});

describe("names", () => {
  test("tag, prefixes, names within 15 characters, aliases", () => {
    assert.match(daemonTag("/var/lib/corral"), /^[0-9a-f]{8}$/);
    assert.notEqual(daemonTag("/a"), daemonTag("/b"));
    assert.equal(defaultTapPrefix("0123abcd", 3), "c0123-3-");
    assert.equal(vethPrefix("0123abcd"), "ci0123-");
    assert.equal(deviceName("c0123-3-", 99999), "c0123-3-99999");
    assert.equal(deviceName(vethPrefix("0123abcd"), 99999).length, 12);
    assert.throws(() => deviceName("averyverylongpre", 1), /longer than 15/);
    assert.equal(groupAlias("0123abcd", "vm"), "corral:0123abcd:vm");
    assert.deepEqual(parseAlias(deviceAlias("0123abcd", "vm", 7)), { tag: "0123abcd", hostgroup: "vm", deviceId: 7 });
    assert.deepEqual(parseAlias("corral:0123abcd:vm"), { tag: "0123abcd", hostgroup: "vm", deviceId: undefined });
    assert.equal(parseAlias("someone else's"), undefined);
    assert.equal(parseAlias(undefined), undefined);
  });
});
