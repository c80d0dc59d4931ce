// The agent's readiness, a VM incarnation's second lifecycle (src/daemon/vm/readiness.ts): its table, the
// one place that moves it, late outcomes of superseded bring-ups, and what "fresh" means.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { canMoveReadiness, Readiness, READINESS_TRANSITIONS, type ReadinessState } from "../../src/daemon/vm/readiness.ts";

/** A bring-up the test settles by hand. */
function manual(): { run: (attempt: number) => Promise<void>; attempt: () => number; resolve: () => void; reject: (err: Error) => void } {
  let attempt = 0;
  let settle!: { resolve: () => void; reject: (err: Error) => void };
  return {
    run: (n) => {
      attempt = n;
      return new Promise<void>((resolve, reject) => {
        settle = { resolve, reject };
      });
    },
    attempt: () => attempt,
    resolve: () => settle.resolve(),
    reject: (err) => settle.reject(err),
  };
}

describe("readiness table", () => {
  test("ready and failed are reached only from connecting; a bring-up may start from any state", () => {
    const states = Object.keys(READINESS_TRANSITIONS) as ReadinessState[];
    for (const from of states) {
      assert.equal(canMoveReadiness(from, "ready"), from === "connecting", `${from} -> ready`);
      assert.equal(canMoveReadiness(from, "failed"), from === "connecting", `${from} -> failed`);
      assert.equal(canMoveReadiness(from, "connecting"), true, `${from} -> connecting`);
    }
    assert.equal(canMoveReadiness("awaiting", "awaiting"), false);
  });
});

describe("Readiness", () => {
  test("a bring-up moves awaiting -> connecting -> ready, and whenSettled follows it", async () => {
    const readiness = new Readiness(false);
    assert.equal(readiness.state, "awaiting");
    const bringUp = manual();
    readiness.begin(bringUp.run);
    assert.equal(readiness.state, "connecting");
    assert.equal(readiness.isReady, false);
    bringUp.resolve();
    await readiness.whenSettled;
    assert.equal(readiness.state, "ready");
    assert.equal(readiness.isReady, true);
  });

  test("a failed bring-up is failed, and whenSettled rejects with its error", async () => {
    const readiness = new Readiness(false);
    const bringUp = manual();
    readiness.begin(bringUp.run);
    bringUp.reject(new Error("agent never answered"));
    await assert.rejects(readiness.whenSettled, /agent never answered/);
    assert.equal(readiness.state, "failed");
  });

  test("the late success of a superseded bring-up does not make the VM ready (a reboot started another)", async () => {
    const readiness = new Readiness(false);
    const first = manual();
    readiness.begin(first.run);
    readiness.restarting();
    const second = manual();
    readiness.begin(second.run);
    assert.equal(readiness.reached(first.attempt(), "ready"), false);
    first.resolve();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(readiness.state, "connecting", "still waiting for the second bring-up");
    second.resolve();
    await readiness.whenSettled;
    assert.equal(readiness.state, "ready");
  });

  test("reached() marks the moment of readiness; the settling that follows changes nothing", async () => {
    const readiness = new Readiness(false);
    const bringUp = manual();
    readiness.begin(bringUp.run);
    assert.equal(readiness.reached(bringUp.attempt(), "ready"), true);
    assert.equal(readiness.isReady, true);
    bringUp.resolve();
    await readiness.whenSettled;
    assert.equal(readiness.state, "ready");
  });

  test("a reboot makes a ready VM not ready until its next bring-up", async () => {
    const readiness = new Readiness(false);
    const bringUp = manual();
    readiness.begin(bringUp.run);
    bringUp.resolve();
    await readiness.whenSettled;
    readiness.restarting();
    assert.equal(readiness.state, "awaiting");
    assert.equal(readiness.isReady, false);
  });

  test("fresh: a created VM until it was first ready; never for a relaunched, restored or re-attached one", async () => {
    const created = new Readiness(true);
    assert.equal(created.fresh, true);
    const failed = manual();
    created.begin(failed.run);
    failed.reject(new Error("x"));
    await assert.rejects(created.whenSettled);
    assert.equal(created.fresh, true, "not ready yet: the guest holds nothing delivered");
    const ok = manual();
    created.begin(ok.run);
    ok.resolve();
    await created.whenSettled;
    assert.equal(created.fresh, false);
    assert.equal(new Readiness(false).fresh, false);
  });
});
