// Sandbox lifetimes: parsing a lifetime from a body or the config, and the host group's policy for new
// sandboxes and for extensions (its default, its maximum, services refused).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { HostGroupConfig } from "../../src/daemon/config.ts";
import { extendedExpiry, newSandboxLifetime } from "../../src/daemon/vm/lifetime-policy.ts";
import type { VmRecord } from "../../src/daemon/vm/vm-store.ts";
import { CorralError } from "../../src/protocol/errors.ts";
import { formatLifetime, MAX_LIFETIME_MS, parseLifetime } from "../../src/protocol/lifetime.ts";

const FIELD = 'body field "lifetime"';

function refused(run: () => unknown, code: string, message: string | RegExp): void {
  assert.throws(run, (err: unknown) => {
    assert.ok(err instanceof CorralError, `expected a CorralError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.status, 400);
    if (typeof message === "string") assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  });
}

function group(overrides: Partial<HostGroupConfig> = {}): HostGroupConfig {
  return {
    name: "sbox",
    count: 0,
    vcpu: 1,
    ramBytes: 512 * 1024 * 1024,
    persistent: false,
    userdata: undefined,
    image: "base",
    sshKeys: [],
    template: true,
    warmPool: 0,
    lifetimeMs: null,
    maxLifetimeMs: null,
    maxVms: undefined,
    network: { mode: "user" },
    dnsServers: [],
    ...overrides,
  };
}

function vm(overrides: Partial<VmRecord> = {}): VmRecord {
  return { hostname: "sbox-1", hostgroup: "sbox", kind: "sandbox", createdAt: "2030-01-01T00:00:00.000Z", expiresAt: null, ...overrides } as VmRecord;
}

describe("parseLifetime", () => {
  test("a Go duration or a number of seconds", () => {
    assert.equal(parseLifetime("30m", FIELD), 1_800_000);
    assert.equal(parseLifetime("1h30m", FIELD), 5_400_000);
    assert.equal(parseLifetime(90, FIELD), 90_000);
    assert.equal(parseLifetime(1.5, FIELD), 1_500);
    assert.equal(parseLifetime("90", FIELD), 90_000);
  });

  test("longer than a day is fine, up to 30 days", () => {
    assert.equal(parseLifetime("48h", FIELD), 48 * 3_600_000);
    assert.equal(parseLifetime("720h", FIELD), MAX_LIFETIME_MS);
    assert.equal(parseLifetime(30 * 86_400, FIELD), MAX_LIFETIME_MS);
    refused(() => parseLifetime("721h", FIELD), "invalid_duration", 'Invalid body field "lifetime" "721h": the longest allowed is 720h');
    refused(() => parseLifetime(30 * 86_400 + 1, FIELD), "invalid_duration", 'Invalid body field "lifetime" 2592001: the longest allowed is 720h');
  });

  test("zero, negative, under a second and nonsense are refused naming the field", () => {
    refused(() => parseLifetime("0s", FIELD), "invalid_duration", 'Invalid body field "lifetime" "0s": a lifetime must be at least "1s"');
    refused(() => parseLifetime(0, FIELD), "invalid_duration", 'Invalid body field "lifetime" 0: a lifetime must be at least "1s"');
    refused(() => parseLifetime("500ms", FIELD), "invalid_duration", 'Invalid body field "lifetime" "500ms": a lifetime must be at least "1s"');
    refused(() => parseLifetime(-5, FIELD), "invalid_duration", 'Invalid body field "lifetime" -5: give a positive number of seconds or a duration such as "30m"');
    refused(() => parseLifetime("-5m", FIELD), "invalid_duration", 'Invalid body field "lifetime" "-5m": use a duration such as "30s", "500ms" or "2m"');
    refused(() => parseLifetime("soon", FIELD), "invalid_duration", /^Invalid body field "lifetime" "soon": use a duration/);
    refused(() => parseLifetime(Number.NaN, FIELD), "invalid_duration", /^Invalid body field "lifetime" NaN: give a positive number/);
    refused(() => parseLifetime(true, FIELD), "invalid_duration", 'Invalid body field "lifetime" true: give a duration such as "30m" or a number of seconds');
  });

  test("formatLifetime writes whole units only", () => {
    assert.deepEqual(
      [formatLifetime(5_400_000), formatLifetime(45_000), formatLifetime(600_000), formatLifetime(3_600_000), formatLifetime(0)],
      ["1h30m", "45s", "10m", "1h", "0s"],
    );
  });
});

describe("newSandboxLifetime", () => {
  test("the create's lifetime, else the group's default, else its maximum, else none", () => {
    assert.equal(newSandboxLifetime(group(), undefined), null);
    assert.equal(newSandboxLifetime(group(), 60_000), 60_000);
    assert.equal(newSandboxLifetime(group({ lifetimeMs: 1_800_000 }), undefined), 1_800_000);
    assert.equal(newSandboxLifetime(group({ lifetimeMs: 1_800_000 }), 7_200_000), 7_200_000, "longer than the default is fine without a maximum");
    assert.equal(newSandboxLifetime(group({ maxLifetimeMs: 3_600_000 }), undefined), 3_600_000, "a group with a maximum has no sandbox without an end");
    assert.equal(newSandboxLifetime(group({ lifetimeMs: 600_000, maxLifetimeMs: 3_600_000 }), undefined), 600_000);
    assert.equal(newSandboxLifetime(group({ maxLifetimeMs: 3_600_000 }), 3_600_000), 3_600_000);
  });

  test("more than the group's maximum is refused", () => {
    refused(
      () => newSandboxLifetime(group({ maxLifetimeMs: 3_600_000 }), 3_601_000),
      "invalid_duration",
      'Invalid lifetime "1h1s": host group "sbox" allows at most "1h" (its max_lifetime)',
    );
  });
});

describe("extendedExpiry", () => {
  const now = new Date("2030-01-01T00:30:00.000Z");

  test("the VM expires the lifetime from now, sooner or later than before", () => {
    assert.equal(extendedExpiry(group(), vm({ expiresAt: "2030-01-01T00:40:00.000Z" }), 3_600_000, now)?.toISOString(), "2030-01-01T01:30:00.000Z");
    assert.equal(extendedExpiry(group(), vm({ expiresAt: "2030-01-01T05:00:00.000Z" }), 60_000, now)?.toISOString(), "2030-01-01T00:31:00.000Z");
    assert.equal(extendedExpiry(group(), vm(), null, now), null, "null: no end");
  });

  test("the group's maximum bounds the whole life, counted from creation", () => {
    const bounded = group({ maxLifetimeMs: 3_600_000 });
    assert.equal(extendedExpiry(bounded, vm(), 1_800_000, now)?.toISOString(), "2030-01-01T01:00:00.000Z");
    refused(
      () => extendedExpiry(bounded, vm(), 1_801_000, now),
      "invalid_duration",
      'Invalid lifetime "30m1s": VM "sbox-1" may live until 2030-01-01T01:00:00.000Z at most (host group "sbox" has max_lifetime "1h")',
    );
    refused(() => extendedExpiry(bounded, vm(), null, now), "invalid_duration", /^Invalid lifetime null: sandboxes of host group "sbox" must end within "1h"/);
  });

  test("services cannot have a lifetime", () => {
    refused(() => extendedExpiry(group({ count: 1 }), vm({ kind: "service" }), 60_000, now), "invalid_request", /^Invalid lifetime: VM "sbox-1" is a service of host group "sbox"/);
  });
});
