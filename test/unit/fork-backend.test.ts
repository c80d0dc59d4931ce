// A memory commit's state loads only on the NIC back end it was saved on: a fork into a host group that
// changed kind since is refused with 409 conflict naming both; a disk-only commit boots anywhere.
import { test } from "node:test";
import assert from "node:assert/strict";
import { assertSameBackend } from "../../src/daemon/vm/vm-commits.ts";
import type { HostGroupConfig } from "../../src/daemon/config.ts";
import { USER_GROUP_NETWORK, type GroupNetwork } from "../../src/net/network-config.ts";
import { CorralError } from "../../src/protocol/errors.ts";

const ISOLATED: GroupNetwork = { mode: "isolated", range: { network: 0xa9fe6400, prefixLength: 22 }, rangeDerived: false, policy: { allow: [], drop: [] } };
const group = (network: GroupNetwork): HostGroupConfig => ({ name: "sbox", network }) as HostGroupConfig;

test("same kind, or a disk-only commit: allowed", () => {
  assertSameBackend("c-1", { memory: true, net: "tap" }, group(ISOLATED));
  assertSameBackend("c-1", { memory: true }, group(USER_GROUP_NETWORK));
  assertSameBackend("c-1", { memory: true, net: "user" }, group(USER_GROUP_NETWORK));
  assertSameBackend("c-1", { memory: false, net: "user" }, group(ISOLATED));
});

test("user-mode memory commit into a TAP group, and the reverse: 409 naming both", () => {
  assert.throws(
    () => assertSameBackend("c-1", { memory: true }, group(ISOLATED)),
    (err: unknown) =>
      err instanceof CorralError &&
      err.code === "conflict" &&
      err.status === 409 &&
      err.message === 'Cannot fork commit "c-1" into host group "sbox": it was saved on user-mode networking and the group uses isolated networking (a TAP back end)',
  );
  assert.throws(
    () => assertSameBackend("c-2", { memory: true, net: "tap" }, group(USER_GROUP_NETWORK)),
    (err: unknown) =>
      err instanceof CorralError &&
      err.code === "conflict" &&
      err.message === 'Cannot fork commit "c-2" into host group "sbox": it was saved on a TAP back end and the group uses user-mode networking',
  );
});
