// TTstack's hardware NIC and net_stats of a daemon VM in each network mode (src/daemon/routes/ttstack-agent.ts):
// libvirt's interface type, the bridge, the host's device, and counters read from the daemon's namespace.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { hardwareNic, hostNicCounters } from "../../src/daemon/routes/ttstack-agent.ts";
import type { VmNetworkDescription } from "../../src/protocol/net.ts";

const described = (mode: "user" | "bridge" | "isolated", bridge: string | null, dev: string | null): VmNetworkDescription => ({
  mode,
  policy_source: "host_group",
  host_group: { allow: [], drop: ["10.0.0.0/8"] },
  effective: { allow: [], drop: ["10.0.0.0/8"] },
  deny_outgoing: true,
  port_map: {},
  interface: { mode, mac: "52:54:00:00:00:09", address: "192.168.137.9", prefix_length: 24, gateway: "192.168.137.1", bridge, target_dev: dev },
});

describe("TTstack's hardware NIC", () => {
  test("bridge: type bridge, its bridge, the TAP as target", () => {
    assert.deepEqual(hardwareNic(described("bridge", "brvm0", "vmtap9")), {
      type: "bridge",
      mac: { address: "52:54:00:00:00:09" },
      source: { mode: "bridge", bridge: "brvm0" },
      model: { model_type: "virtio" },
      target: { dev: "vmtap9" },
      ip: { address: "192.168.137.9/24", gateway: "192.168.137.1" },
      policy: { source: "host_group", allow: [], drop: ["10.0.0.0/8"], deny_outgoing: true },
    });
  });

  test("isolated: type ethernet, no bridge, the veth end as target; user: type user, eth0", () => {
    const isolated = hardwareNic(described("isolated", null, "ci0a1b-3"));
    assert.deepEqual([isolated.type, isolated.source, isolated.target], ["ethernet", { mode: "isolated" }, { dev: "ci0a1b-3" }]);
    const user = hardwareNic(described("user", null, null));
    assert.deepEqual([user.type, user.source, user.target], ["user", { mode: "user" }, { dev: "eth0" }]);
  });
});

describe("host-side NIC counters", () => {
  test("a device of this namespace is counted from the guest's side (what the host sends, the guest reads)", async () => {
    const lo = await hostNicCounters("lo");
    assert.ok(lo !== undefined);
    assert.equal(lo.device, "lo");
    assert.ok(Number.isInteger(lo.read_bytes) && lo.read_bytes >= 0 && Number.isInteger(lo.write_bytes) && lo.write_bytes >= 0);
  });

  test("no device, or one that is gone: nothing", async () => {
    assert.equal(await hostNicCounters(null), undefined);
    assert.equal(await hostNicCounters("nosuchdev0"), undefined);
  });
});
