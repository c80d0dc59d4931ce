// The engine's own attachments (user mode, the detached TAP of TAP-mode templates), the base provider that
// picks between them, and what launch-vm renders from an attachment: user mode's QEMU argv and kernel
// command line must stay exactly what they were before the seam.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import type { AccelVerdict } from "../../src/engine/qemu/accel-probe.ts";
import { buildQemuArgs, kernelCmdline } from "../../src/engine/qemu/qemu-args.ts";
import { backendKind, DefaultAttachments } from "../../src/net/default-attachments.ts";
import { createDetachedTapAttachment, DETACHED_TAP } from "../../src/net/detached-tap-attachment.ts";
import type { NetworkAttachment } from "../../src/net/attachment.ts";
import { USER_GROUP_NETWORK, type GroupNetwork } from "../../src/net/network-config.ts";
import { createUserAttachment } from "../../src/net/user-attachment.ts";
import { userNetwork } from "../../src/net/user-network.ts";
import { CorralError } from "../../src/protocol/errors.ts";
import { attachmentRequest, bootNetworkOf, machineNicOf, machineSpecFor } from "../../src/daemon/vm/launch-vm.ts";
import { qemuSpecOf } from "../../src/engine/qemu/qemu-engine.ts";
import { guestNetworkIdentity } from "../../src/daemon/vm/vm-supervisor.ts";
import { Reverter } from "../../src/util/reverter.ts";

const MAC = "52:54:00:12:34:56";
const PATHS = { disk: "/s/disk.qcow2", serialLog: "/s/serial.log", agentSocket: "/s/agent.sock" };
const FILES = { control: "/s/qmp.sock", pidFile: "/s/qemu.pid" };
const IMAGE = { kernel: "/k/vmlinuz", initrd: "/k/initrd" };
const ACCEL: AccelVerdict = { accel: "tcg", mode: "auto", reason: "", decided_at: "", cached: false };
const BRIDGE: GroupNetwork = {
  mode: "bridge",
  bridge: "brvm0",
  tapPrefix: "vmtap",
  gateway: { address: 0xc0a88901, prefixLength: 24 },
  range: undefined,
  addresses: [],
  policy: { allow: [], drop: [] },
};

/** A TAP attachment with an address, as part B's bridge attachment makes one (a stand-in for its shape). */
function addressedTap(): NetworkAttachment {
  return {
    mode: "bridge",
    guest: { address: "192.168.137.2", prefixLength: 24, gateway: "192.168.137.1", dns: ["192.168.137.1", "9.9.9.9"], mac: MAC },
    netdev: { kind: "tap", ifname: "vmtap3", vhost: false },
    launchPrefix: [],
    needsPlumbing: true,
    plumb: async () => undefined,
    view: () => ({ mode: "bridge", mac: MAC, address: "192.168.137.2", prefix_length: 24, gateway: "192.168.137.1", bridge: "brvm0", target_dev: "vmtap3" }),
  };
}

describe("user attachment", () => {
  const forwards = [
    { guest: 22, host: 40022 },
    { guest: 8080, host: 40080 },
  ];
  const attachment = createUserAttachment({ mac: MAC, portMap: forwards, denyOutgoing: true, forwardAddress: "127.0.0.1" });

  test("QEMU's NIC and the kernel command line are exactly user-network.ts's (today's argv)", () => {
    const before = userNetwork(
      MAC,
      forwards.map((f) => ({ hostAddress: "127.0.0.1", hostPort: f.host, guestPort: f.guest })),
      true,
    );
    assert.deepEqual(machineNicOf(attachment), before);
    const spec = {
      accel: "tcg" as const,
      cpus: 1,
      memoryMiB: 256,
      kernel: "k",
      initrd: "i",
      cmdline: "c",
      disk: { path: "d", format: "qcow2" as const },
      serialLog: "s",
      qmpSocket: "q",
      agentSocket: "a",
      pidFile: "p",
    };
    assert.deepEqual(buildQemuArgs({ ...spec, network: machineNicOf(attachment) }), buildQemuArgs({ ...spec, network: before }));
    assert.equal(
      kernelCmdline({ accel: "kvm", hostname: "h", network: bootNetworkOf(attachment), tscKhz: 1 }),
      kernelCmdline({ accel: "kvm", hostname: "h", network: before, tscKhz: 1 }),
    );
  });

  test("no prefix, nothing to plumb; the view says user mode with slirp's address", async () => {
    assert.deepEqual(attachment.launchPrefix, []);
    assert.equal(attachment.needsPlumbing, false);
    await attachment.plumb(1, new Reverter());
    assert.deepEqual(attachment.view(), { mode: "user", mac: MAC, address: "10.0.2.15", prefix_length: 24, gateway: "10.0.2.2", bridge: null, target_dev: null });
    assert.deepEqual(attachment.guest.dns, ["10.0.2.3"]);
  });

  test("the spec of a user-mode machine is not frozen", () => {
    const spec = qemuSpecOf(machineSpecFor({ hostname: "h", mac: MAC, cpus: 1, ramBytes: 256 * 1024 * 1024 }, PATHS, IMAGE, ACCEL, 1, attachment), FILES, ACCEL);
    assert.equal(spec.freeze, false);
    assert.equal(buildQemuArgs(spec).includes("-S"), false);
  });
});

describe("detached TAP attachment (templates of TAP-mode groups)", () => {
  const attachment = createDetachedTapAttachment({ mode: "isolated", mac: MAC });

  test("QEMU in its own network namespace, on tap0 with vnet_hdr, no address on the command line", () => {
    assert.deepEqual(attachment.launchPrefix, ["unshare", "--net", "--"]);
    assert.equal(attachment.needsPlumbing, false);
    assert.deepEqual(machineNicOf(attachment), { kind: "tap", ifname: DETACHED_TAP, vhost: false, mac: MAC });
    assert.equal(bootNetworkOf(attachment), undefined);
    const spec = qemuSpecOf(machineSpecFor({ hostname: "corral-template", mac: MAC, cpus: 1, ramBytes: 256 * 1024 * 1024 }, PATHS, IMAGE, ACCEL, 1, attachment), FILES, ACCEL);
    assert.doesNotMatch(spec.cmdline, /corral\.(ip|gw|dns)/);
    const args = buildQemuArgs(spec);
    assert.equal(args[args.indexOf("-netdev") + 1], "tap,id=net0,ifname=tap0,script=no,downscript=no,vnet_hdr=on");
    assert.equal(attachment.view().mode, "isolated");
  });

  test("the supervisor tells its guest no address", () => {
    assert.deepEqual(guestNetworkIdentity({ attachment }), {});
  });
});

describe("a TAP attachment with an address (what B's attachments give the engine)", () => {
  test("a cold boot gets address, gateway and every DNS server on the command line; the spec is frozen for plumbing", () => {
    const spec = qemuSpecOf(machineSpecFor({ hostname: "vm-1", mac: MAC, cpus: 1, ramBytes: 256 * 1024 * 1024 }, PATHS, IMAGE, ACCEL, 1, addressedTap()), FILES, ACCEL);
    assert.match(spec.cmdline, / corral\.hostname=vm-1 corral\.ip=192\.168\.137\.2\/24 corral\.gw=192\.168\.137\.1 corral\.dns=192\.168\.137\.1,9\.9\.9\.9$/);
    assert.equal(spec.freeze, true);
    const args = buildQemuArgs(spec);
    assert.equal(args.at(-1), "-S");
    assert.equal(args[args.indexOf("-netdev") + 1], "tap,id=net0,ifname=vmtap3,script=no,downscript=no,vnet_hdr=on");
  });

  test("after a restore the identity carries the address", () => {
    assert.deepEqual(guestNetworkIdentity({ attachment: addressedTap() }), {
      network: { address: "192.168.137.2", prefix_length: 24, gateway: "192.168.137.1", dns: ["192.168.137.1", "9.9.9.9"] },
    });
    assert.deepEqual(guestNetworkIdentity({ attachment: createUserAttachment({ mac: MAC, portMap: [], denyOutgoing: false, forwardAddress: "127.0.0.1" }) }), {});
    assert.deepEqual(guestNetworkIdentity({ attachment: undefined }), {});
  });
});

describe("DefaultAttachments", () => {
  const groups: Record<string, { network: GroupNetwork }> = { sbox: { network: USER_GROUP_NETWORK }, vm: { network: BRIDGE } };
  const provider = new DefaultAttachments((name) => groups[name], "10.1.2.3");
  const request = (hostgroup: string, purpose: "vm" | "template") =>
    attachmentRequest({ hostname: "x-1", hostgroup, mac: MAC, cpus: 1, ramBytes: 1, portMap: [{ guest: 80, host: 20080 }], denyOutgoing: false }, purpose);

  test("user-mode groups (and groups gone from the configuration) get user mode, forwards on the daemon's address", async () => {
    for (const group of ["sbox", "gone"]) {
      const a = await provider.attachmentFor(request(group, "vm"));
      assert.equal(a.mode, "user");
      assert.deepEqual(a.netdev.kind === "user" && a.netdev.forwards, [{ hostAddress: "10.1.2.3", hostPort: 20080, guestPort: 80 }]);
    }
  });

  test("a TAP-mode group's template gets a detached TAP; its VMs are not this provider's", async () => {
    const template = await provider.attachmentFor(request("vm", "template"));
    assert.equal(template.mode, "bridge");
    assert.equal(template.netdev.kind, "tap");
    assert.deepEqual(template.launchPrefix, ["unshare", "--net", "--"]);
    await assert.rejects(provider.attachmentFor(request("vm", "vm")), (err: unknown) => err instanceof CorralError && err.code === "network_unavailable");
  });

  test("backendKind: user for user mode and unknown groups, tap otherwise", () => {
    assert.equal(backendKind(undefined), "user");
    assert.equal(backendKind({ network: USER_GROUP_NETWORK }), "user");
    assert.equal(backendKind({ network: BRIDGE }), "tap");
    assert.equal(
      backendKind({ network: { mode: "isolated", range: { network: 0, prefixLength: 22 }, rangeDerived: true, policy: { allow: [], drop: [] } } as GroupNetwork }),
      "tap",
    );
  });
});
