// When a process started, as the daemon reports a VM's run start (Virtumancer's uptime): this test's own
// process started when Node says it did, to a tick or two; a pid that does not exist has no start.
import assert from "node:assert/strict";
import { test } from "node:test";
import { processStartedAt } from "../../src/engine/index.ts";

test("processStartedAt: this process's start, from /proc", () => {
  const started = processStartedAt(process.pid);
  assert.ok(started, "a start time");
  const expected = Date.now() - process.uptime() * 1000;
  assert.ok(Math.abs(started.getTime() - expected) < 2000, `${started.toISOString()} vs ${new Date(expected).toISOString()}`);
  assert.equal(processStartedAt(2 ** 22 + 12345), undefined);
});
