// A template's key: user-mode groups keep the key they had before TAP modes existed (their templates stay
// valid across the upgrade); a TAP-mode group's key differs, so a group that changes kind gets a new template.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { templateKey } from "../../src/daemon/templates/template-manager.ts";
import { USER_GROUP_NETWORK, type GroupNetwork } from "../../src/net/network-config.ts";

const ISOLATED: GroupNetwork = { mode: "isolated", range: { network: 0xa9fe6400, prefixLength: 22 }, rangeDerived: false, policy: { allow: [], drop: [] } };
const engine = { accel: { accel: "tcg" as const, kvmCpu: undefined }, tscKhz: 2695946, qemu: "qemu-7.2" };
const group = (network: GroupNetwork) => ({ image: "base", vcpu: 1, ramBytes: 512 * 1024 * 1024, network });

test("user mode: the same key as before TAP modes (format 1, no net field)", () => {
  const before = createHash("sha256")
    .update(
      JSON.stringify({ format: "1", image: "base", imageVersion: "v1", cpus: 1, ramBytes: 512 * 1024 * 1024, accel: "tcg", kvmCpu: undefined, tscKhz: 2695946, qemu: "qemu-7.2" }),
    )
    .digest("hex");
  assert.equal(templateKey(group(USER_GROUP_NETWORK), "v1", engine), before);
});

test("a TAP-mode group's key differs from a user-mode one's, and bridge and isolated share one", () => {
  const user = templateKey(group(USER_GROUP_NETWORK), "v1", engine);
  const isolated = templateKey(group(ISOLATED), "v1", engine);
  assert.notEqual(isolated, user);
  const bridge: GroupNetwork = {
    mode: "bridge",
    bridge: "brvm0",
    tapPrefix: "vmtap",
    gateway: { address: 0xc0a88901, prefixLength: 24 },
    range: undefined,
    addresses: [],
    policy: { allow: [], drop: [] },
  };
  assert.equal(templateKey(group(bridge), "v1", engine), isolated);
});
