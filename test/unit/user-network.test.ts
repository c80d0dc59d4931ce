import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { buildQemuArgs, kernelCmdline, type PortForward } from "../../src/engine/qemu/qemu-args.ts";
import { randomMac, USER_NET, userNetwork } from "../../src/net/user-network.ts";

describe("randomMac", () => {
  test("is in QEMU's 52:54:00 range, six lower-case hex pairs", () => {
    for (let i = 0; i < 500; i++) {
      const mac = randomMac();
      assert.match(mac, /^52:54:00(:[0-9a-f]{2}){3}$/, mac);
      assert.equal(mac.length, 17);
    }
  });

  test("is a locally administered unicast address", () => {
    const first = parseInt(randomMac().slice(0, 2), 16);
    assert.equal(first & 0x01, 0, "unicast");
    assert.equal(first & 0x02, 2, "locally administered");
  });

  test("does not repeat over many calls", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 2_000; i++) seen.add(randomMac());
    // 2,000 draws from 2^24 values collide about 0.12 times on average: allow a couple, not a stuck generator.
    assert.ok(seen.size >= 1_997, `only ${seen.size} distinct MACs in 2000 calls`);
  });

  test("the random bytes cover the whole range of each octet", () => {
    const octets = [new Set<string>(), new Set<string>(), new Set<string>()];
    for (let i = 0; i < 3_000; i++) {
      for (const [k, o] of randomMac().split(":").slice(3).entries()) octets[k]?.add(o);
    }
    // Each octet should take most of its 256 values, single hex digits padded included.
    for (const set of octets) {
      assert.ok(set.size > 200, `only ${set.size} values`);
      assert.ok([...set].every((o) => o.length === 2));
    }
  });
});

describe("userNetwork", () => {
  test("the slirp defaults", () => {
    assert.deepEqual(USER_NET, { guestAddress: "10.0.2.15", prefixLength: 24, gateway: "10.0.2.2", dns: "10.0.2.3" });
  });

  test("defaults: no forwards, outbound allowed", () => {
    assert.deepEqual(userNetwork("52:54:00:12:34:56"), {
      guestCidr: "10.0.2.15/24",
      gateway: "10.0.2.2",
      dns: "10.0.2.3",
      mac: "52:54:00:12:34:56",
      forwards: [],
      denyOutgoing: false,
    });
  });

  test("forwards and denyOutgoing are kept", () => {
    const forwards: PortForward[] = [{ hostAddress: "127.0.0.1", hostPort: 2222, guestPort: 22 }];
    const net = userNetwork("52:54:00:00:00:01", forwards, true);
    assert.equal(net.forwards, forwards);
    assert.equal(net.denyOutgoing, true);
    assert.equal(net.mac, "52:54:00:00:00:01");
  });

  test("each call gets its own default forwards list", () => {
    assert.notEqual(userNetwork("a").forwards, userNetwork("b").forwards);
  });

  test("feeds the QEMU arguments and the kernel command line consistently", () => {
    const net = userNetwork("52:54:00:aa:bb:cc", [{ hostAddress: "127.0.0.1", hostPort: 40000, guestPort: 22 }], true);
    assert.equal(
      kernelCmdline({ accel: "kvm", hostname: "sbox-1", network: net, tscKhz: 2695946 }),
      "console=ttyS0 reboot=k panic=-1 pci=off quiet root=/dev/vda rw corral.hostname=sbox-1 corral.ip=10.0.2.15/24 corral.gw=10.0.2.2 corral.dns=10.0.2.3",
    );
    const args = buildQemuArgs({
      accel: "kvm",
      cpus: 1,
      memoryMiB: 256,
      kernel: "/k",
      initrd: "/i",
      cmdline: "",
      disk: { path: "/d", format: "raw" },
      serialLog: "/s",
      qmpSocket: "/q",
      agentSocket: "/a",
      pidFile: "/p",
      network: net,
    });
    assert.equal(args[args.indexOf("-netdev") + 1], "user,id=net0,net=10.0.2.0/24,host=10.0.2.2,dns=10.0.2.3,restrict=on,hostfwd=tcp:127.0.0.1:40000-:22");
    assert.ok(args.includes("virtio-net-device,netdev=net0,mac=52:54:00:aa:bb:cc"));
  });
});
