// The guest addon's setIpv4 (src/guest/native/corral-native.c), compiled as the image builder compiles it and
// run by node inside a network namespace this test made, on one end of a veth pair: what it leaves is read
// back with iproute2. The bridge and isolated tests run it inside real guests; this one pins down the edges
// (other addresses removed, an exact address kept, the route replaced, bad arguments and devices refused).
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { buildGuestNative } from "../../src/image/guest-native.ts";
import { TestNetns } from "../helpers/netns.ts";

const isRoot = process.getuid?.() === 0;

interface AddressInfo {
  local: string;
  prefixlen: number;
  valid_life_time: number;
}

describe("guest addon: setIpv4 through rtnetlink", { timeout: 120_000, skip: isRoot ? false : "needs root (network namespaces)" }, () => {
  let ns: TestNetns;
  let cache: string;
  let addon: string;

  /** Runs setIpv4 with these arguments in the namespace; its error message, or "" when it returned. */
  async function setIpv4(device: string, address: number[], prefix: number, gateway: number[] | null): Promise<string> {
    const script = `
      const native = require(${JSON.stringify(addon)});
      try {
        native.setIpv4(${JSON.stringify(device)}, Buffer.from(${JSON.stringify(address)}), ${prefix}, ${gateway ? `Buffer.from(${JSON.stringify(gateway)})` : "null"});
      } catch (err) {
        process.stdout.write(err.message);
      }`;
    return ns.run(process.execPath, ["-e", script]);
  }

  async function addresses(device: string): Promise<AddressInfo[]> {
    const parsed = JSON.parse(await ns.run("ip", ["-j", "-4", "addr", "show", "dev", device])) as { addr_info: AddressInfo[] }[];
    return parsed.flatMap((link) => link.addr_info);
  }

  async function defaultRoute(): Promise<string> {
    return (await ns.run("ip", ["-4", "route", "show", "default"])).trim();
  }

  before(async () => {
    cache = await mkdtemp(join(tmpdir(), "corral-native-"));
    addon = await buildGuestNative(cache);
    ns = await TestNetns.create("native");
    await ns.run("ip", ["link", "add", "eth0", "type", "veth", "peer", "name", "peer0"]);
    await ns.run("ip", ["link", "set", "peer0", "up"]);
  });

  after(async () => {
    await ns?.dispose();
    await rm(cache, { recursive: true, force: true });
  });

  test("other addresses go, the wanted one comes, the link comes up and the default route points at the gateway", async () => {
    await ns.run("ip", ["addr", "add", "10.9.9.9/24", "dev", "eth0"]);
    await ns.run("ip", ["addr", "add", "10.8.8.8/16", "dev", "eth0"]);
    assert.equal(await setIpv4("eth0", [192, 168, 137, 2], 24, [192, 168, 137, 1]), "");
    assert.deepEqual(
      (await addresses("eth0")).map((a) => `${a.local}/${a.prefixlen}`),
      ["192.168.137.2/24"],
    );
    assert.match(await ns.run("ip", ["link", "show", "eth0"]), /[<,]UP[,>]/);
    assert.equal(await defaultRoute(), "default via 192.168.137.1 dev eth0");
  });

  test("an interface that already holds exactly the address keeps it; the route is replaced, not added twice", async () => {
    // A lifetime marks the address: a removed and re-added one would be permanent again.
    await ns.run("ip", ["addr", "flush", "dev", "eth0"]);
    await ns.run("ip", ["addr", "add", "192.168.137.2/24", "dev", "eth0", "valid_lft", "900", "preferred_lft", "900"]);
    assert.equal(await setIpv4("eth0", [192, 168, 137, 2], 24, [192, 168, 137, 254]), "");
    const [kept, ...others] = await addresses("eth0");
    assert.deepEqual(others, []);
    assert.equal(`${kept?.local}/${kept?.prefixlen}`, "192.168.137.2/24");
    assert.ok((kept?.valid_life_time ?? 0) <= 900, "the address was not removed and added again");
    assert.equal(await defaultRoute(), "default via 192.168.137.254 dev eth0");
    // The same address with another prefix length is another address.
    assert.equal(await setIpv4("eth0", [192, 168, 137, 2], 16, null), "");
    assert.deepEqual(
      (await addresses("eth0")).map((a) => `${a.local}/${a.prefixlen}`),
      ["192.168.137.2/16"],
    );
  });

  test("a missing device, a gateway off the subnet and malformed arguments fail with a message, nothing changed", async () => {
    assert.equal(await setIpv4("nosuch0", [10, 0, 0, 2], 24, null), "nosuch0: No such device");
    assert.match(await setIpv4("eth0", [192, 168, 137, 2], 16, [10, 0, 0, 1]), /^RTM_NEWROUTE \(default route\): Network is unreachable/);
    assert.match(await setIpv4("eth0", [10, 0, 0], 24, null), /Buffer of 4/);
    assert.match(await setIpv4("eth0", [10, 0, 0, 2], 33, null), /1 to 32/);
    assert.deepEqual(
      (await addresses("eth0")).map((a) => `${a.local}/${a.prefixlen}`),
      ["192.168.137.2/16"],
    );
  });
});
