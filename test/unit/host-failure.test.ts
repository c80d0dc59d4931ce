// How the controller reports what a host answered when it passes a call on (the shell, logs, power actions).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { describeHostFailure, hostFailure } from "../../src/controller/host-driver.ts";
import { CorralError } from "../../src/protocol/errors.ts";
import { CorralApiError } from "../../src/sdk/transport.ts";

const answered = (status: number, code: string) => new CorralApiError(status, code, `the host said ${code}`, "GET", "/vm/x/shell");

describe("hostFailure", () => {
  test("a host's 4xx keeps its status and code", () => {
    const err = hostFailure("h1", answered(404, "vm_not_found"));
    assert.ok(err instanceof CorralError);
    assert.deepEqual([err.code, err.status, err.message], ["vm_not_found", 404, "the host said vm_not_found"]);
  });

  test("a 4xx with a code we do not know is invalid_request with the host's status", () => {
    const err = hostFailure("h1", answered(418, "teapot")) as CorralError;
    assert.deepEqual([err.code, err.status], ["invalid_request", 418]);
  });

  test("503 agent_unavailable (a VM still booting) is passed on, not called unreachable", () => {
    const err = hostFailure("h1", answered(503, "agent_unavailable")) as CorralError;
    assert.deepEqual([err.code, err.status], ["agent_unavailable", 503]);
  });

  test("507 insufficient_storage (the host's disk is full, a VM frozen by it) is passed on, not called unreachable", () => {
    const err = hostFailure("h1", answered(507, "insufficient_storage")) as CorralError;
    assert.deepEqual([err.code, err.status, err.message], ["insufficient_storage", 507, "the host said insufficient_storage"]);
  });

  test("no answer at all is host_unreachable; a 500 is host_bad_answer; both name the host", () => {
    const unreachable = hostFailure("h1", new TypeError("fetch failed")) as CorralError;
    assert.deepEqual([unreachable.code, unreachable.status], ["host_unreachable", 502]);
    assert.match(unreachable.message, /Host "h1" did not answer/);
    const broken = hostFailure("h1", answered(500, "internal_error")) as CorralError;
    assert.deepEqual([broken.code, broken.status], ["host_bad_answer", 502]);
    assert.match(broken.message, /Host "h1" answered .* with 500: /);
  });

  test("a CorralError raised on this side passes unchanged", () => {
    const own = new CorralError("host_not_found", 'Host "h9" is not registered');
    assert.equal(hostFailure("h9", own), own);
  });
});

describe("describeHostFailure", () => {
  test("a host's answer with its status and code; a connection failure by its code; the controller's own verdict by its message", () => {
    assert.equal(describeHostFailure(answered(409, "conflict")), "the host said conflict (409 conflict)");
    assert.equal(
      describeHostFailure(new TypeError("fetch failed", { cause: Object.assign(new Error("connect"), { code: "ECONNREFUSED" }) })),
      "the host cannot be reached (ECONNREFUSED)",
    );
    // Its cause (the host's 409) has a code too: the verdict is not taken for an unreachable host.
    const verdict = new CorralError("conflict", 'Host "h1" already has a VM named "e-1" that is not this one: it belongs to environment "f"', { cause: answered(409, "conflict") });
    assert.equal(describeHostFailure(verdict), verdict.message);
  });
});
