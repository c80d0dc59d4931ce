import { test, describe, after, before } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { buildDaemonApp, repairEscapedQuery } from "../../src/daemon/http/app.ts";
import type { DaemonContext } from "../../src/daemon/http/context.ts";
import { DaemonMetrics } from "../../src/daemon/metrics.ts";

describe("repairEscapedQuery", { timeout: 20_000 }, () => {
  test('turns an escaped "?" (%3F) back into the query separator', () => {
    assert.equal(repairEscapedQuery("/hostgroup/x/nodes%3Ftag=a"), "/hostgroup/x/nodes?tag=a");
    assert.equal(repairEscapedQuery("/nodes%3Ftag=a&tag_prefix=b"), "/nodes?tag=a&tag_prefix=b");
  });

  test("accepts the lower-case escape", () => {
    assert.equal(repairEscapedQuery("/hostgroup/x/nodes%3ftag=a"), "/hostgroup/x/nodes?tag=a");
  });

  test("repairs only the first escape; later ones stay part of the query", () => {
    assert.equal(repairEscapedQuery("/nodes%3Ftag=a%3Fb"), "/nodes?tag=a%3Fb");
  });

  test('leaves URLs that already have a "?" untouched', () => {
    assert.equal(repairEscapedQuery("/nodes?tag=a%3Fb"), "/nodes?tag=a%3Fb");
    assert.equal(repairEscapedQuery("/hostgroup/x/nodes%3Ftag=a?tag=b"), "/hostgroup/x/nodes%3Ftag=a?tag=b");
  });

  test("leaves URLs without an escaped ? untouched", () => {
    for (const url of ["/", "/nodes", "/hostgroup/x/nodes", "/vm/a/exec%20x", "/nodes%3", "/nodes%2Ftag"]) assert.equal(repairEscapedQuery(url), url);
  });
});

describe("buildDaemonApp routing of escaped queries", { timeout: 20_000 }, () => {
  const calls: unknown[] = [];
  const manager = {
    groups: () => [],
    group: (name: string) => ({ name }),
    list: (filter: unknown) => {
      calls.push(filter);
      return [];
    },
    lastAgentCall: () => undefined,
  };
  const ctx = { manager, images: {}, accel: {}, metrics: new DaemonMetrics(() => ({})), version: "0.0.0-test", gitCommit: "test" } as unknown as DaemonContext;
  const building = buildDaemonApp(ctx, { token: undefined, log: pino({ level: "silent" }) });
  let app: Awaited<typeof building>;
  before(async () => {
    app = await building;
  });
  after(() => app.close());

  test("GET /hostgroup/NAME/nodes%3Ftag=... reaches the node list with its filter", async () => {
    calls.length = 0;
    const res = await app.inject({ url: "/hostgroup/x/nodes%3Ftag=a" });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), []);
    assert.deepEqual(calls, [{ hostgroup: "x", tag: "a", tagPrefix: undefined }]);
  });

  test("the lower-case escape and /nodes work too", async () => {
    calls.length = 0;
    assert.equal((await app.inject({ url: "/hostgroup/x/nodes%3ftag_prefix=ci-" })).statusCode, 200);
    assert.equal((await app.inject({ url: "/nodes%3Ftag=a&tag_prefix=b" })).statusCode, 200);
    assert.deepEqual(calls, [
      { hostgroup: "x", tag: undefined, tagPrefix: "ci-" },
      { tag: "a", tagPrefix: "b" },
    ]);
  });

  test("a bad host group name in the path is a 400 invalid_name", async () => {
    const res = await app.inject({ url: "/hostgroup/Bad_Name/nodes" });
    assert.equal(res.statusCode, 400);
    assert.deepEqual(res.json(), { error: 'Invalid path parameter "name": it must be a host group name', code: "invalid_name" });
  });
});
