// The networking fields of request bodies checked against the host group's mode (src/daemon/routes/
// network-fields.ts): what each mode takes, every refusal as a 400 naming the field, and each group's
// network as /hostgroup and /info show it from the configuration.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { parseDaemonConfig, ttstackGroup, type HostGroupConfig } from "../../src/daemon/config.ts";
import { checkPatchLists, configuredGroupNetwork, groupNetworks, parseNetworkOverride, parseStaticIp } from "../../src/daemon/routes/network-fields.ts";
import { CorralError } from "../../src/protocol/errors.ts";

const config = parseDaemonConfig(
  `config:
  host_groups:
    - name: sbox
    - name: vm
      network: { gateway: 192.168.137.1/24, range: 192.168.137.20-192.168.137.80, allow: ["0.0.0.0/0"] }
    - name: sandbox
      network: { mode: isolated, range: 169.254.100.0/22 }
`,
  "c.yaml",
);
const groups = config.hostGroups;
const [user, bridge, isolated] = groups as [HostGroupConfig, HostGroupConfig, HostGroupConfig];

function refusal(fn: () => unknown): { code: string; status: number; message: string } {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof CorralError, String(err));
    return { code: err.code, status: err.status, message: err.message };
  }
  assert.fail("expected a refusal");
}

describe("create's ip", () => {
  test("a bridge group takes an address of its subnet, alone or with the subnet's prefix", () => {
    assert.equal(parseStaticIp("192.168.137.9", bridge, groups), "192.168.137.9");
    assert.equal(parseStaticIp("192.168.137.9/24", bridge, groups), "192.168.137.9");
    assert.equal(parseStaticIp(undefined, bridge, groups), undefined);
    assert.equal(parseStaticIp("", user, groups), undefined);
  });

  test("refusals name the field, the group and why", () => {
    assert.deepEqual(
      refusal(() => parseStaticIp("10.0.2.15", user, groups)),
      {
        code: "invalid_request",
        status: 400,
        message: 'Invalid body field "ip": host group "sbox" uses user-mode networking (config.host_groups[0].network.mode), where addresses are not chosen per VM',
      },
    );
    assert.deepEqual(
      refusal(() => parseStaticIp("169.254.100.2", isolated, groups)).message,
      'Invalid body field "ip": host group "sandbox" is in isolated mode, where VMs get a /30 block each: leave "ip" out',
    );
    assert.equal(refusal(() => parseStaticIp("10.0.0.9", bridge, groups)).message, 'Invalid body field "ip": "10.0.0.9" is outside host group "vm"\'s subnet "192.168.137.0/24"');
    for (const bad of ["nope", "192.168.137.9/16", "192.168.137.300", "192.168.137.9/"]) {
      assert.equal(
        refusal(() => parseStaticIp(bad, bridge, groups)).message,
        `Invalid body field "ip": "${bad}" is not an IPv4 address of the subnet "192.168.137.0/24", e.g. "192.168.137.2"`,
      );
    }
    const api = ttstackGroup(config);
    assert.match(
      refusal(() => parseStaticIp("10.0.2.15", api, [...groups, api])).message,
      /host group "ttstack" is not configured: add it to config\.host_groups with a network: section/,
    );
  });
});

describe("create's and fork's network", () => {
  test("bridge and isolated groups take lists; absent stays absent, [] clears", () => {
    const parsed = parseNetworkOverride({ allow: ["192.168.222.1:3128"], drop: [] }, isolated, groups);
    assert.deepEqual(
      parsed?.allow?.map((e) => e.text),
      ["192.168.222.1:3128"],
    );
    assert.deepEqual(parsed?.drop, []);
    assert.deepEqual(parseNetworkOverride({ drop: ["10.0.0.0/8"] }, bridge, groups)?.allow, undefined);
    assert.equal(parseNetworkOverride(undefined, user, groups), undefined);
  });

  test("a user-mode group refuses them naming where its mode is set", () => {
    assert.deepEqual(
      refusal(() => parseNetworkOverride({ allow: [] }, user, groups)),
      {
        code: "invalid_request",
        status: 400,
        message:
          'Invalid body field "network": host group "sbox" uses user-mode networking (config.host_groups[0].network.mode), which takes no allow/drop lists: use a host group in bridge or isolated mode',
      },
    );
  });

  test('a bad entry is named as body field "network.allow[1]"', () => {
    assert.equal(
      refusal(() => parseNetworkOverride({ allow: ["1.1.1.1", "nope"] }, bridge, groups)).message,
      'Invalid body field "network.allow[1]": "nope" is not an IPv4 address or CIDR, e.g. "10.0.0.0/8"',
    );
    assert.equal(
      refusal(() => parseNetworkOverride({ drop: ["::/0"] }, isolated, groups)).message,
      'Invalid body field "network.drop[0]": "::/0" is IPv6: only IPv4 entries are supported',
    );
  });
});

describe("PATCH /vm/HOST/network's body", () => {
  test("lists and deny_outgoing are taken for TAP-mode groups, deny_outgoing alone for user mode (the manager decides)", () => {
    checkPatchLists({ allow: ["0.0.0.0/0"], drop: null, deny_outgoing: true }, bridge, groups);
    checkPatchLists({ allow: null }, isolated, groups);
    checkPatchLists({ deny_outgoing: false }, user, groups);
  });

  test("refusals", () => {
    assert.equal(refusal(() => checkPatchLists({}, bridge, groups)).message, 'Give at least one of the body fields "allow", "drop" and "deny_outgoing"');
    assert.equal(
      refusal(() => checkPatchLists({ drop: ["10.0.0.0/8", "10.1.0.0/8"] }, bridge, groups)).message,
      'Invalid body field "drop[1]": "10.1.0.0/8" has host bits set: its network is "10.0.0.0/8"',
    );
    assert.equal(
      refusal(() => checkPatchLists({ allow: [] }, user, groups)).message,
      'Invalid body field "allow": host group "sbox" uses user-mode networking (config.host_groups[0].network.mode), which takes no allow/drop lists: use a host group in bridge or isolated mode',
    );
  });
});

describe("each group's network from its configuration", () => {
  test("user groups are ready; TAP groups say what they would be and that nothing set them up", () => {
    assert.deepEqual(configuredGroupNetwork(user), { name: "sbox", mode: "user", state: "ready", reason: "" });
    assert.deepEqual(configuredGroupNetwork(bridge), {
      name: "vm",
      mode: "bridge",
      state: "unavailable",
      reason: "bridge mode is not set up by this daemon yet",
      bridge: "brvm0",
      gateway: "192.168.137.1/24",
      range: "192.168.137.20-192.168.137.80",
    });
    assert.deepEqual(configuredGroupNetwork(isolated), {
      name: "sandbox",
      mode: "isolated",
      state: "unavailable",
      reason: "isolated mode is not set up by this daemon yet",
      range: "169.254.100.0/22",
    });
  });

  test("a manager's live view wins group by group, in the wire's shape", () => {
    const live = {
      hostgroup: "vm",
      mode: "bridge" as const,
      state: "ready" as const,
      reason: null,
      bridge: "brvm0",
      gateway: "192.168.137.1/24",
      range: "192.168.137.20-192.168.137.80",
      addresses: 61,
      free_addresses: 61,
    };
    const views = groupNetworks({ groupNetwork: (name) => (name === "vm" ? live : undefined) }, groups);
    assert.deepEqual(
      views.map((v) => [v.name, v.state]),
      [
        ["sbox", "ready"],
        ["vm", "ready"],
        ["sandbox", "unavailable"],
      ],
    );
    assert.deepEqual(views[1], {
      name: "vm",
      mode: "bridge",
      state: "ready",
      reason: "",
      bridge: "brvm0",
      gateway: "192.168.137.1/24",
      range: "192.168.137.20-192.168.137.80",
      free_addresses: 61,
    });
    assert.deepEqual(groupNetworks({ groupNetwork: () => undefined }, [user]), [configuredGroupNetwork(user)]);
  });
});
