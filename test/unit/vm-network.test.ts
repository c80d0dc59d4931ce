// A VM's network beside its record (src/daemon/vm/vm-network.ts, the lease hooks of VmStore with
// NetworkManager): the describe body, PATCH semantics, and that a lease lives and dies with its record.
// The manager runs over a runner that changes nothing on the host (no devices here: see
// network-manager.test.ts for the kernel side).
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { pino } from "pino";
import { parseAddressWithPrefix, type AddressWithPrefix } from "../../src/net/cidr.ts";
import { IpamStore } from "../../src/net/ipam-store.ts";
import type { LinkRunner } from "../../src/net/link-commands.ts";
import { NetworkManager } from "../../src/net/network-manager.ts";
import { parseEgressList } from "../../src/net/policy.ts";
import { overrideOfRecord, policyPatch, storedOverride, vmNetworkDescription } from "../../src/daemon/vm/vm-network.ts";
import { VmStore } from "../../src/daemon/vm/vm-store.ts";
import { CorralError } from "../../src/protocol/errors.ts";
import { newVm } from "../helpers/new-vm.ts";

const INERT: LinkRunner = { ipBatch: async () => undefined, links: async () => [], sysctl: async () => undefined, nft: async () => "" };
const CAPS = { uid: 0, netAdmin: true, sysAdmin: true, tun: true, nft: true, unshare: true, nsenter: true, bridgeNetfilter: true, vhostNet: false };

function lists(entries: string[]) {
  const parsed = parseEgressList(entries, "t");
  if ("problem" in parsed) throw new Error(parsed.problem);
  return parsed;
}

describe("a VM's network beside its record", () => {
  let dir = "";
  let store: VmStore;
  let network: NetworkManager;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-vm-network-test-"));
    store = new VmStore(join(dir, "corral.db"));
    network = new NetworkManager({
      stateDir: dir,
      groups: [
        { name: "sbox", index: 0, network: { mode: "user" }, dnsServers: [] },
        {
          name: "sandbox",
          index: 2,
          network: { mode: "isolated", range: { network: ((169 << 24) | (254 << 16) | (100 << 8)) >>> 0, prefixLength: 22 }, rangeDerived: false, policy: { allow: [], drop: [] } },
          dnsServers: [],
        },
        {
          name: "vm",
          index: 1,
          network: {
            mode: "bridge",
            bridge: "brvm0",
            tapPrefix: "vmtap",
            gateway: parseAddressWithPrefix("192.168.137.1/24") as AddressWithPrefix,
            range: undefined,
            addresses: [],
            policy: { allow: [], drop: lists(["10.0.0.0/8"]) },
          },
          dnsServers: ["192.168.137.1"],
        },
      ],
      hostIsolation: true,
      hostAccess: [],
      ipam: new IpamStore(store.database),
      base: { attachmentFor: () => Promise.reject(new Error("not under test")) },
      log: pino({ level: "silent" }),
      runner: INERT,
      caps: CAPS,
      overrideOf: (hostname) => storedOverride(store.get(hostname)?.networkPolicy ?? {}),
    });
    await network.start();
    store.onDelete((hostname) => network.release(hostname));
  });

  afterEach(async () => {
    await network.stop();
    store.close();
    await rm(dir, { recursive: true, force: true });
  });

  const create = (ip?: string) =>
    store.transaction(() => {
      const record = store.insertSandbox(newVm({ hostgroup: "vm", mac: "02:fc:00:00:00:09" }), 0);
      const lease = network.lease("vm", record.hostname, record.mac, { ip });
      store.setAddress(record.hostname, lease?.address as string, record.mac);
      return store.get(record.hostname);
    });

  test("a lease is taken with the record and released with it, whoever deletes the record", () => {
    const record = create();
    assert.equal(record?.ip, "192.168.137.2");
    assert.equal(network.hasLease(record?.hostname as string), true);
    assert.equal(store.delete(record?.hostname as string, record?.incarnation as number), true);
    assert.equal(network.hasLease(record?.hostname as string), false);
  });

  test("a refused lease (address taken) leaves no record behind", () => {
    create("192.168.137.50");
    assert.throws(
      () => create("192.168.137.50"),
      (err: unknown) => err instanceof CorralError && err.code === "address_in_use" && err.status === 409,
    );
    assert.deepEqual(
      store.list().map((r) => r.ip),
      ["192.168.137.50"],
    );
  });

  test("a warm-pool clone's lease becomes the VM's at hand-out", () => {
    const pooled = network.lease("vm", "pool-3", "02:fc:00:00:00:03", { ownerKind: "pool" });
    network.handOut("pool-3", "vm-7");
    assert.equal(network.hasLease("pool-3"), false);
    assert.equal(network.hasLease("vm-7"), true);
    assert.equal(network.nicOf("vm-7", "vm", "02:fc:00:00:00:03")?.address, pooled?.address);
  });

  test("ip in an isolated or user group is refused by name; a user group takes no lease", () => {
    assert.throws(() => network.lease("sbox", "x", "m", { ip: "10.0.2.20" }), /user-mode networking: "ip" is only for host groups in bridge mode/);
    assert.equal(network.lease("sbox", "x", "m"), undefined);
  });

  test("describe: the group's lists, the override and the effective policy, like Slicer's SDK shows them", () => {
    const record = create();
    const plain = vmNetworkDescription(record!, network);
    assert.equal(plain.mode, "bridge");
    assert.equal(plain.policy_source, "host_group");
    assert.deepEqual(plain.effective, { allow: [], drop: ["10.0.0.0/8"] });
    assert.equal(plain.override, undefined);
    assert.deepEqual(plain.interface, {
      mode: "bridge",
      mac: "02:fc:00:00:00:09",
      address: "192.168.137.2",
      prefix_length: 24,
      gateway: "192.168.137.1",
      bridge: "brvm0",
      target_dev: "vmtap0",
    });
    const overridden = store.setNetworkPolicy(record!.hostname, overrideOfRecord({ allow: [] }), true);
    const described = vmNetworkDescription(overridden!, network);
    assert.equal(described.policy_source, "override");
    assert.deepEqual(described.override, { allow: [] }, "a cleared list shows as an empty list, as the Go SDK's cold-fork example asserts");
    assert.deepEqual(described.effective, { allow: [], drop: ["10.0.0.0/8"] });
    assert.equal(described.deny_outgoing, true);
    const user = vmNetworkDescription(store.insertSandbox(newVm(), 0), network);
    assert.equal(user.mode, "user");
    assert.equal(user.interface.address, "10.0.2.15");
  });

  test("PATCH: absent keeps, null goes back to the group's list, a list replaces; a bad entry names its field", () => {
    assert.deepEqual(policyPatch({ drop: ["1.2.3.0/24"] }, { allow: ["192.168.222.1:3128"] }), { drop: ["1.2.3.0/24"], allow: ["192.168.222.1:3128"] });
    assert.deepEqual(policyPatch({ drop: ["1.2.3.0/24"], allow: [] }, { drop: null }), { allow: [] });
    assert.throws(
      () => policyPatch({}, { drop: ["10.0.0.0/8", "::/0"] }),
      (err: unknown) =>
        err instanceof CorralError && err.code === "invalid_request" && err.message === 'Invalid body field drop[1] "::/0" is IPv6: only IPv4 entries are supported',
    );
  });

  test("isolated groups stay unavailable, saying why, until isolated-attachment.ts is composed; info shows each group", () => {
    assert.throws(
      () => network.lease("sandbox", "sandbox-1", "m"),
      (err: unknown) =>
        err instanceof CorralError &&
        err.code === "network_unavailable" &&
        err.status === 503 &&
        err.message === 'Host group "sandbox" (network.mode isolated) is unavailable: isolated mode is not built yet in this Corral',
    );
    create();
    const info = network.info();
    assert.deepEqual(info.tables, [`inet corral_net_${network.tag}`, `bridge corral_br_${network.tag}`]);
    assert.deepEqual(
      info.groups.map((g) => [g.hostgroup, g.mode, g.state, g.bridge, g.gateway, g.range, g.addresses, g.free_addresses]),
      [
        ["sandbox", "isolated", "unavailable", null, null, "169.254.100.0/22", 256, 256],
        ["vm", "bridge", "ready", "brvm0", "192.168.137.1/24", "192.168.137.0/24", 253, 252],
      ],
    );
  });
});
