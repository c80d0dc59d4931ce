// What QemuMachine translates at the seam's edge (src/engine/qemu/qemu-machine.ts): QMP events into typed
// machine events, and a process's status plus what the daemon did to it into the exit's cause.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { exitCauseOf, machineEventOf } from "../../src/engine/qemu/qemu-machine.ts";

describe("machineEventOf", () => {
  test("the events the daemon listens to get the seam's names", () => {
    assert.deepEqual(machineEventOf({ event: "STOP" }), { type: "stopped" });
    assert.deepEqual(machineEventOf({ event: "RESUME" }), { type: "resumed" });
    assert.deepEqual(machineEventOf({ event: "RESET", data: { guest: false } }), { type: "reset" });
    assert.deepEqual(machineEventOf({ event: "SHUTDOWN", data: { guest: true, reason: "guest-shutdown" } }), { type: "shutdown", byGuest: true });
    assert.deepEqual(machineEventOf({ event: "SHUTDOWN", data: { guest: false, reason: "host-qmp-quit" } }), { type: "shutdown", byGuest: false });
  });

  test("a disk error keeps what the daemon decides on (stop or not, a full disk or not)", () => {
    const data = { device: "", "node-name": "disk0", operation: "write", action: "stop", nospace: true, reason: "No space left on device" };
    assert.deepEqual(machineEventOf({ event: "BLOCK_IO_ERROR", data }), {
      type: "disk-error",
      device: "",
      operation: "write",
      action: "stop",
      nospace: true,
      reason: "No space left on device",
    });
    const other = { device: "", operation: "read", action: "report", reason: "Input/output error" };
    assert.equal((machineEventOf({ event: "BLOCK_IO_ERROR", data: other }) as { nospace: boolean }).nospace, false, "absent nospace is false");
  });

  test("other events and a BLOCK_IO_ERROR without data are not the daemon's business", () => {
    assert.equal(machineEventOf({ event: "NIC_RX_FILTER_CHANGED" }), undefined);
    assert.equal(machineEventOf({ event: "BLOCK_IO_ERROR" }), undefined);
  });
});

describe("exitCauseOf", () => {
  const none = { signalSent: undefined, asked: false };
  test("a signal nobody here sent is a crash; one the daemon sent is a kill", () => {
    assert.equal(exitCauseOf({ code: null, signal: "SIGBUS" }, none), "crashed");
    assert.equal(exitCauseOf({ code: null, signal: "SIGKILL" }, none), "crashed");
    assert.equal(exitCauseOf({ code: null, signal: "SIGKILL" }, { signalSent: "SIGKILL", asked: true }), "killed", "a shutdown whose grace ran out");
    assert.equal(exitCauseOf({ code: null, signal: "SIGKILL" }, { signalSent: "SIGTERM", asked: false }), "killed");
  });

  test("an exit status is the guest's doing unless the daemon asked for the end", () => {
    assert.equal(exitCauseOf({ code: 0, signal: null }, none), "guest");
    assert.equal(exitCauseOf({ code: 1, signal: null }, none), "guest");
    assert.equal(exitCauseOf({ code: 0, signal: null }, { signalSent: undefined, asked: true }), "requested");
  });

  test("a re-attached process has no status: asked, killed or vanished by what the daemon did", () => {
    assert.equal(exitCauseOf({ code: null, signal: null }, none), "vanished");
    assert.equal(exitCauseOf({ code: null, signal: null }, { signalSent: undefined, asked: true }), "requested");
    assert.equal(exitCauseOf({ code: null, signal: null }, { signalSent: "SIGKILL", asked: true }), "killed");
  });
});
