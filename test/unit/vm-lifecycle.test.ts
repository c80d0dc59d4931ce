import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { CorralError } from "../../src/protocol/errors.ts";
import { assertTransition, canTransition, isLive, LIVE_STATES, slicerStatus, type VmState } from "../../src/protocol/vm-lifecycle.ts";

const STATES: readonly VmState[] = ["creating", "booting", "running", "paused", "suspending", "suspended", "stopping", "stopped", "failed"];

// Written out here independently of the module's table, so a change to either shows up.
const ALLOWED: ReadonlySet<string> = new Set([
  "creating->booting",
  "creating->failed",
  "booting->running",
  "booting->stopping",
  "booting->stopped",
  "booting->failed",
  "running->paused",
  "running->stopping",
  "running->stopped",
  "running->failed",
  "running->booting",
  "paused->running",
  "paused->stopping",
  "paused->stopped",
  "paused->failed",
  "running->suspending",
  "paused->suspending",
  "suspending->suspended",
  "suspending->running",
  "suspending->paused",
  "suspending->failed",
  "suspended->booting",
  "suspended->failed",
  "stopping->stopped",
  "stopping->failed",
  "stopped->booting",
  "failed->booting",
]);

describe("canTransition", () => {
  for (const from of STATES) {
    for (const to of STATES) {
      const allowed = ALLOWED.has(`${from}->${to}`);
      test(`${from} -> ${to} is ${allowed ? "allowed" : "forbidden"}`, () => {
        assert.equal(canTransition(from, to), allowed);
      });
    }
  }

  test("the table has exactly 27 allowed moves out of 81", () => {
    let count = 0;
    for (const from of STATES) for (const to of STATES) if (canTransition(from, to)) count++;
    assert.equal(count, 27);
  });

  test("no state moves to itself", () => {
    for (const state of STATES) assert.equal(canTransition(state, state), false, state);
  });

  test("nothing returns to creating", () => {
    for (const state of STATES) assert.equal(canTransition(state, "creating"), false, state);
  });

  test("every state can eventually fail or stop except the terminal ones, which can only boot again", () => {
    assert.deepEqual(
      STATES.filter((s) => canTransition(s, "failed")),
      ["creating", "booting", "running", "paused", "suspending", "suspended", "stopping"],
    );
    assert.deepEqual(
      STATES.filter((s) => canTransition("stopped", s)),
      ["booting"],
    );
    assert.deepEqual(
      STATES.filter((s) => canTransition("failed", s)),
      ["booting"],
    );
  });
});

describe("assertTransition", () => {
  test("allowed moves return without throwing", () => {
    assert.equal(assertTransition("sbox-1", "creating", "booting"), undefined);
    assert.equal(assertTransition("sbox-1", "running", "booting"), undefined);
  });

  test("forbidden moves throw a conflict naming the VM and both states", () => {
    const cases: [VmState, VmState][] = [
      ["stopped", "running"],
      ["creating", "running"],
      ["paused", "paused"],
      ["stopping", "running"],
      ["failed", "stopped"],
    ];
    for (const [from, to] of cases) {
      assert.throws(
        () => assertTransition("web-3", from, to),
        (err: unknown) => {
          assert.ok(err instanceof CorralError);
          assert.equal(err.code, "conflict");
          assert.equal(err.status, 409);
          assert.equal(err.message, `Cannot move VM "web-3" from ${from} to ${to}`);
          return true;
        },
      );
    }
  });
});

describe("isLive", () => {
  test("a QEMU process exists while booting, running, paused, suspending and stopping", () => {
    assert.deepEqual(STATES.filter(isLive), ["booting", "running", "paused", "suspending", "stopping"]);
    assert.deepEqual([...LIVE_STATES], ["booting", "running", "paused", "suspending", "stopping"]);
  });

  test("not while creating, suspended, stopped or failed", () => {
    for (const state of ["creating", "suspended", "stopped", "failed"] as const) assert.equal(isLive(state), false, state);
  });
});

describe("slicerStatus", () => {
  test("maps every state", () => {
    assert.deepEqual(Object.fromEntries(STATES.map((s) => [s, slicerStatus(s)])), {
      creating: "Running",
      booting: "Running",
      running: "Running",
      paused: "Paused",
      suspending: "Running",
      suspended: "Stopped",
      stopping: "Running",
      stopped: "Stopped",
      failed: "Stopped",
    });
  });
});
