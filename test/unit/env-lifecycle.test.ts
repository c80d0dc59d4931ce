// The environment lifecycle's table (src/protocol/env-lifecycle.ts), pinned move by move; the fleet store's
// walk of the same table against a real database is in controller-store.test.ts.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { CorralError } from "../../src/protocol/errors.ts";
import { assertEnvMove, canMoveEnv, ENV_STATES, envStatesLeadingTo, IN_FLIGHT_STATES, isInFlight, type EnvState } from "../../src/protocol/env-lifecycle.ts";
import { EnvStateSchema } from "../../src/protocol/controller.ts";

// Written out here independently of the module's table, so a change to either shows up.
const ENV_MOVES: ReadonlySet<string> = new Set([
  "creating->running",
  "creating->partial",
  "creating->failed",
  "creating->stopping",
  "creating->starting",
  "creating->deleting",
  ...["running", "partial", "failed", "stopped"].flatMap((from) => [`${from}->stopping`, `${from}->starting`, `${from}->deleting`]),
  "stopping->stopped",
  "stopping->partial",
  "stopping->stopping",
  "stopping->starting",
  "stopping->deleting",
  "starting->running",
  "starting->partial",
  "starting->starting",
  "starting->stopping",
  "starting->deleting",
  "deleting->deleting",
]);

describe("canMoveEnv", () => {
  for (const from of ENV_STATES) {
    for (const to of ENV_STATES) {
      const allowed = ENV_MOVES.has(`${from}->${to}`);
      test(`${from} -> ${to} is ${allowed ? "allowed" : "refused"}`, () => {
        assert.equal(canMoveEnv(from, to), allowed);
        if (allowed) assertEnvMove("e1", from, to);
        else
          assert.throws(
            () => assertEnvMove("e1", from, to),
            (err: unknown) => err instanceof CorralError && err.code === "conflict" && err.status === 409 && err.message === `Cannot move environment "e1" from ${from} to ${to}`,
          );
      });
    }
  }

  test("the table has exactly 29 allowed moves out of 64", () => {
    assert.equal(ENV_MOVES.size, 29);
    assert.equal(ENV_STATES.flatMap((from) => ENV_STATES.filter((to) => canMoveEnv(from, to))).length, 29);
  });
});

describe("the states around the table", () => {
  test("envStatesLeadingTo lists the sources of a move, in the vocabulary's order", () => {
    assert.deepEqual(envStatesLeadingTo("stopping"), ["creating", "running", "partial", "failed", "stopping", "stopped", "starting"]);
    assert.deepEqual(envStatesLeadingTo("stopped"), ["stopping"]);
    assert.deepEqual(envStatesLeadingTo("deleting"), [...ENV_STATES]);
    assert.deepEqual(envStatesLeadingTo("creating"), [], "creating is where an environment begins, never a move");
  });

  test("deleting is never left: a delete goes on until the environment is forgotten", () => {
    assert.deepEqual(
      ENV_STATES.filter((to) => canMoveEnv("deleting", to)),
      ["deleting"],
    );
  });

  test("the in-flight states are the operations under way", () => {
    assert.deepEqual([...IN_FLIGHT_STATES], ["creating", "stopping", "starting", "deleting"]);
    assert.deepEqual(
      ENV_STATES.filter((s: EnvState) => isInFlight(s)),
      ["creating", "stopping", "starting", "deleting"],
    );
  });

  test("the wire schema lists the vocabulary (the OpenAPI documents show it)", () => {
    assert.deepEqual((EnvStateSchema as unknown as { enum: string[] }).enum, [...ENV_STATES]);
  });
});
