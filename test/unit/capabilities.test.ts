// What a host group in a TAP mode needs, as the sentence a daemon logs and a create answers with when it is
// missing (src/net/capabilities.ts, plan §4.2), and the probe of this host.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { missingFor, probeCapabilities, type NetCapabilities } from "../../src/net/capabilities.ts";

const ALL: NetCapabilities = { uid: 0, netAdmin: true, sysAdmin: true, tun: true, nft: true, unshare: true, nsenter: true, bridgeNetfilter: true, vhostNet: false };
const PATH = "config.host_groups[1].network";

describe("missingFor", () => {
  test("nothing missing: no sentence (vhost-net is optional)", () => {
    assert.equal(missingFor("bridge", ALL, PATH), undefined);
    assert.equal(missingFor("isolated", ALL, PATH), undefined);
  });

  test("not root: names the uid, what the mode makes, and both ways out", () => {
    assert.equal(
      missingFor("isolated", { ...ALL, uid: 1000, netAdmin: false, sysAdmin: false }, PATH),
      "the daemon runs as uid 1000, not root: isolated mode makes a network namespace, a veth pair and nftables rules per VM (CAP_SYS_ADMIN and CAP_NET_ADMIN). Run the daemon as root, or set config.host_groups[1].network.mode: user",
    );
  });

  test("bridge mode does without CAP_SYS_ADMIN and util-linux; isolated mode does not", () => {
    const noSysAdmin = { ...ALL, sysAdmin: false, unshare: false, nsenter: false };
    assert.equal(missingFor("bridge", noSysAdmin, PATH), undefined);
    assert.match(
      missingFor("isolated", noSysAdmin, PATH) ?? "",
      /^the daemon lacks CAP_NET_ADMIN or CAP_SYS_ADMIN; "unshare" or "nsenter" is not installed \(Debian package "util-linux"\): isolated mode/,
    );
  });

  test("each missing tool is named with its package", () => {
    assert.match(
      missingFor("bridge", { ...ALL, nft: false, tun: false }, PATH) ?? "",
      /^\/dev\/net\/tun cannot be opened \(load the tun module\); "nft" is not installed \(Debian package "nftables"\): bridge mode/,
    );
    assert.match(missingFor("bridge", { ...ALL, bridgeNetfilter: false }, PATH) ?? "", /^bridge netfilter is missing \(modprobe br_netfilter\)/);
  });

  test("the probe reads this host", { skip: process.platform === "linux" ? false : "Linux only" }, () => {
    const caps = probeCapabilities();
    assert.equal(caps.uid, process.getuid?.());
    if (caps.uid === 0) assert.equal(caps.netAdmin, true);
  });
});
