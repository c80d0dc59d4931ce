// The `ip -batch` scripts of bridges and TAP ports as literal text, and the reading of `ip -j -d address`
// (src/net/link-commands.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { bridgeBatch, deleteLinksBatch, enslaveBatch, parseLinks } from "../../src/net/link-commands.ts";

describe("link commands", () => {
  test("a new bridge: made, aliased, addressed, bridge netfilter on, up; an adopted one is not made again", () => {
    assert.equal(
      bridgeBatch({ bridge: "brvm0", alias: "corral:0123abcd:vm", gateway: "192.168.137.1/24", adopt: false }),
      'link add brvm0 type bridge\nlink set dev brvm0 alias "corral:0123abcd:vm"\naddress replace 192.168.137.1/24 dev brvm0\nlink set dev brvm0 type bridge nf_call_iptables 1\nlink set dev brvm0 up\n',
    );
    assert.doesNotMatch(bridgeBatch({ bridge: "brvm0", alias: "a", gateway: "10.0.0.1/24", adopt: true }), /link add/);
  });

  test("a TAP goes on its bridge with its alias and comes up; debris is deleted by name", () => {
    assert.equal(
      enslaveBatch({ tap: "vmtap3", bridge: "brvm0", alias: 'corral:0123abcd:vm:3"' }),
      'link set dev vmtap3 master brvm0\nlink set dev vmtap3 alias "corral:0123abcd:vm:3"\nlink set dev vmtap3 up\n',
    );
    assert.equal(deleteLinksBatch(["a", "b"]), "link delete dev a\nlink delete dev b\n");
  });

  test("ip's JSON: name, alias, kind, master and IPv4 addresses only", () => {
    const links = parseLinks(
      JSON.stringify([
        {
          ifname: "lo",
          addr_info: [
            { family: "inet", local: "127.0.0.1", prefixlen: 8 },
            { family: "inet6", local: "::1", prefixlen: 128 },
          ],
        },
        { ifname: "brvm0", ifalias: "corral:0123abcd:vm", linkinfo: { info_kind: "bridge" }, addr_info: [{ family: "inet", local: "192.168.137.1", prefixlen: 24 }] },
        { ifname: "vmtap0", master: "brvm0", linkinfo: { info_kind: "tun" } },
      ]),
    );
    assert.deepEqual(links, [
      { name: "lo", alias: undefined, kind: undefined, master: undefined, addresses: [{ address: "127.0.0.1", prefixLength: 8 }] },
      { name: "brvm0", alias: "corral:0123abcd:vm", kind: "bridge", master: undefined, addresses: [{ address: "192.168.137.1", prefixLength: 24 }] },
      { name: "vmtap0", alias: undefined, kind: "tun", master: "brvm0", addresses: [] },
    ]);
    assert.deepEqual(parseLinks(""), []);
  });
});
