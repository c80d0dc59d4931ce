// The guest's side of a TAP-mode identity: which `ip` commands re-address eth0 (none that would drop its
// connections when it already has the address), the resolv.conf text, and the checks on what the host sends.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { checkNetwork, networkCommands, parseAddresses, resolvConf } from "../../src/guest/network.ts";

const NET = { address: "192.168.137.3", prefix_length: 24, gateway: "192.168.137.1", dns: ["192.168.137.1", "1.1.1.1"] };

describe("guest network", () => {
  test("no address yet (a template clone): add it, link up, default route", () => {
    assert.deepEqual(networkCommands("eth0", [], NET), [
      ["addr", "flush", "dev", "eth0"],
      ["addr", "add", "192.168.137.3/24", "dev", "eth0"],
      ["link", "set", "eth0", "up"],
      ["route", "replace", "default", "via", "192.168.137.1", "dev", "eth0"],
    ]);
  });

  test("another address (a fork, or user mode's 10.0.2.15): flushed and replaced", () => {
    assert.deepEqual(networkCommands("eth0", ["192.168.137.2/24"], NET).slice(0, 2), [
      ["addr", "flush", "dev", "eth0"],
      ["addr", "add", "192.168.137.3/24", "dev", "eth0"],
    ]);
    assert.equal(networkCommands("eth0", ["192.168.137.3/16"], NET)[0]?.[1], "flush");
    assert.equal(networkCommands("eth0", ["192.168.137.3/24", "10.0.0.9/8"], NET)[0]?.[1], "flush");
  });

  test("already there (every reconnect): no flush, only the idempotent link and route", () => {
    assert.deepEqual(networkCommands("eth0", ["192.168.137.3/24"], NET), [
      ["link", "set", "eth0", "up"],
      ["route", "replace", "default", "via", "192.168.137.1", "dev", "eth0"],
    ]);
    assert.deepEqual(networkCommands("eth0", ["192.168.137.3/24"], { ...NET, gateway: "" }), [["link", "set", "eth0", "up"]]);
  });

  test("busybox ip -o -4 addr output is parsed", () => {
    const out = "2: eth0    inet 192.168.137.3/24 scope global eth0\\       valid_lft forever preferred_lft forever\n2: eth0    inet 10.1.0.2/8 scope global eth0\n";
    assert.deepEqual(parseAddresses(out), ["192.168.137.3/24", "10.1.0.2/8"]);
    assert.deepEqual(parseAddresses(""), []);
  });

  test("resolv.conf: one line per server, in order", () => {
    assert.equal(resolvConf(["192.168.137.1", "1.1.1.1"]), "nameserver 192.168.137.1\nnameserver 1.1.1.1\n");
  });

  test("what the host sends is checked before it reaches a command line", () => {
    checkNetwork(NET);
    checkNetwork({ ...NET, gateway: "", dns: [] });
    for (const bad of [
      { ...NET, address: "192.168.137.300" },
      { ...NET, address: "1.2.3.4; reboot" },
      { ...NET, prefix_length: 33 },
      { ...NET, prefix_length: 0 },
      { ...NET, gateway: "-x" },
      { ...NET, dns: ["1.1.1.1", "$(id)"] },
    ])
      assert.throws(() => checkNetwork(bad));
  });
});
