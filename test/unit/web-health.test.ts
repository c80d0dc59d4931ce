import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { VM_HEALTH } from "../../src/protocol/vm-health.ts";
import { healthLabel, healthTone, healthWorthShowing } from "../../web/src/lib/health.ts";

describe("dashboard: VM health", () => {
  test("every health has words and a tone; the ones that need a person are bad", () => {
    for (const health of VM_HEALTH) {
      assert.notEqual(healthLabel(health), "", health);
      assert.ok(["good", "busy", "bad", "idle"].includes(healthTone(health)), health);
    }
    assert.equal(healthTone("ok"), "good");
    for (const health of ["unresponsive", "disk_full", "io_error"]) assert.equal(healthTone(health), "bad", health);
    assert.equal(healthLabel("disk_full"), "frozen: host disk full");
  });

  test("a health this dashboard does not know is shown as it came, neutral", () => {
    assert.equal(healthLabel("overheated"), "overheated");
    assert.equal(healthTone("overheated"), "idle");
  });

  test("shown beside the state only when it says more than the state", () => {
    assert.equal(healthWorthShowing(undefined, "running"), false, "an older host sends none");
    assert.equal(healthWorthShowing("ok", "running"), true);
    assert.equal(healthWorthShowing("paused", "paused"), false);
    assert.equal(healthWorthShowing("disk_full", "paused"), true, "why it is paused");
    assert.equal(healthWorthShowing("stopped", "stopped"), false);
    assert.equal(healthWorthShowing("unresponsive", "running"), true);
  });
});
