// A VM's health from its record and what the daemon sees live: a disk stop (from QEMU's event, or its run
// state after a restart), a pause, the agent's liveness checks; why a QEMU that died counts as a crash; and
// the bring-up deadline that does not run while the vCPUs are stopped.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { describeCrash } from "../../src/daemon/vm/exit-policy.ts";
import type { MachineExit } from "../../src/engine/index.ts";
import { exitCauseOf } from "../../src/engine/qemu/qemu-machine.ts";
import { healthOf, VmCondition, type LiveFacts } from "../../src/daemon/vm/vm-condition.ts";
import type { VmState } from "../../src/protocol/vm-lifecycle.ts";
import { runningTimeout } from "../../src/util/abort.ts";

const T0 = new Date("2026-01-01T10:00:00.000Z");
const context = { stateDir: "/var/lib/corral/daemon" };
const record = (state: VmState, lastError: string | null = null) => ({ hostname: "sbox-1", state, lastError, updatedAt: "2026-01-01T09:00:00.000Z" });
const live = (fields: Partial<LiveFacts> = {}): LiveFacts => ({ condition: new VmCondition(), readiness: { isReady: true }, ...fields });

describe("VM health", () => {
  test("without a QEMU process: starting while created, stopped otherwise, a failure's reason as detail", () => {
    assert.deepEqual(healthOf(record("creating"), undefined, context), { health: "starting" });
    assert.deepEqual(healthOf(record("stopped"), undefined, context), { health: "stopped" });
    assert.deepEqual(healthOf(record("suspended"), undefined, context), { health: "stopped" });
    assert.deepEqual(healthOf(record("failed", "QEMU was killed by SIGBUS: …"), undefined, context), { health: "stopped", health_detail: "QEMU was killed by SIGBUS: …" });
    assert.deepEqual(healthOf(record("running"), undefined, context), { health: "stopped" }, "a record whose runtime is gone");
  });

  test("a live VM: starting until its agent is ready, then ok; paused on request", () => {
    assert.deepEqual(healthOf(record("booting"), live({ readiness: { isReady: false } }), context), { health: "starting" });
    assert.deepEqual(healthOf(record("running"), live(), context), { health: "ok" });
    assert.deepEqual(healthOf(record("paused"), live(), context), { health: "paused", health_since: "2026-01-01T09:00:00.000Z" });
  });

  test("a disk stop wins over everything; nospace is disk_full, with the state directory to free", () => {
    const condition = new VmCondition();
    condition.stoppedByDisk({ nospace: true, reason: "No space left on device" }, T0);
    const health = healthOf(record("paused"), live({ condition }), context);
    assert.equal(health.health, "disk_full");
    assert.equal(health.health_since, T0.toISOString());
    assert.equal(
      health.health_detail,
      'QEMU stopped VM "sbox-1": the host cannot store what it writes to its disk (No space left on device); free space in /var/lib/corral/daemon, then POST /vm/sbox-1/resume',
    );
    assert.equal(healthOf(record("booting"), live({ condition, readiness: { isReady: false } }), context).health, "disk_full", "also while booting");
    // Each further failed request repeats the event: the first time stays.
    condition.stoppedByDisk({ nospace: true, reason: "No space left on device" }, new Date(T0.getTime() + 5000));
    assert.equal(condition.diskStop?.since, T0);
    condition.resumed();
    assert.equal(healthOf(record("running"), live({ condition }), context).health, "ok");
    condition.stoppedByDisk({ nospace: false, reason: "Input/output error" }, T0);
    assert.equal(healthOf(record("paused"), live({ condition }), context).health, "io_error");
  });

  test("after a restart QEMU's run state says it: io-error, and the drive's io-status says whether the disk was full", () => {
    const condition = new VmCondition();
    condition.fromRunState({ diskError: { nospace: true } });
    assert.equal(condition.diskStop?.kind, "disk_full");
    condition.fromRunState({ diskError: { nospace: false } });
    assert.equal(condition.diskStop?.kind, "io_error");
    condition.fromRunState({});
    assert.equal(condition.diskStop, undefined, "a pause on request is not a disk stop");
  });

  test("the agent is unresponsive after `failures` missed checks in a row, ok again at the next answer", () => {
    const condition = new VmCondition();
    assert.equal(condition.missed(2, T0), "unknown");
    assert.equal(healthOf(record("running"), live({ condition }), context).health, "ok", "one miss is not enough");
    condition.missed(2, new Date(T0.getTime() + 1000));
    const wedged = healthOf(record("running"), live({ condition }), context);
    assert.equal(wedged.health, "unresponsive");
    assert.equal(wedged.health_since, new Date(T0.getTime() + 1000).toISOString());
    assert.match(wedged.health_detail ?? "", /^The guest agent of VM "sbox-1" has not answered its liveness checks since it was connected/);
    assert.equal(condition.answered(new Date(T0.getTime() + 9000)), "unresponsive");
    assert.deepEqual(healthOf(record("running"), live({ condition }), context), { health: "ok", health_since: new Date(T0.getTime() + 9000).toISOString() });
    condition.missed(2);
    assert.equal(healthOf(record("running"), live({ condition }), context).health, "ok", "the count starts again");
    condition.agentRestarting();
    assert.deepEqual([condition.agent, condition.misses], ["unknown", 0]);
  });
});

/** An exit as the QEMU machine reports it: its status, and the signal the daemon sent, if any. */
function exit(code: number | null, signal: NodeJS.Signals | null, sent: NodeJS.Signals | undefined): MachineExit {
  const info = { code, signal };
  return { ...info, cause: exitCauseOf(info, { signalSent: sent, asked: false }) };
}

describe("describeCrash", () => {
  test("a death by a signal the daemon did not send is a crash, with the reason", () => {
    assert.match(describeCrash(exit(null, "SIGBUS", undefined)) ?? "", /^QEMU was killed by SIGBUS: a page of the VM's memory could not be backed/);
    assert.match(describeCrash(exit(null, "SIGKILL", undefined)) ?? "", /out-of-memory killer/);
    assert.match(describeCrash(exit(null, "SIGSEGV", undefined)) ?? "", /^QEMU crashed \(SIGSEGV\)/);
    assert.match(describeCrash(exit(null, "SIGTERM", undefined)) ?? "", /from outside the daemon/);
  });

  test("an exit, a signal the daemon sent, or no status (a re-attached process) is not", () => {
    assert.equal(describeCrash(exit(0, null, undefined)), undefined);
    assert.equal(describeCrash(exit(1, null, undefined)), undefined);
    assert.equal(describeCrash(exit(null, "SIGKILL", "SIGKILL")), undefined);
    assert.equal(describeCrash(exit(null, "SIGKILL", "SIGTERM")), undefined);
    assert.equal(describeCrash(exit(null, null, undefined)), undefined);
  });
});

describe("runningTimeout", () => {
  test("counts only the time during which the clock runs", (t) => {
    t.mock.timers.enable({ apis: ["setInterval"] });
    let running = true;
    const deadline = runningTimeout(3000, () => running);
    t.mock.timers.tick(2000);
    running = false;
    t.mock.timers.tick(60_000);
    assert.equal(deadline.signal.aborted, false, "stopped vCPUs do not use up the deadline");
    running = true;
    t.mock.timers.tick(1000);
    assert.equal(deadline.signal.aborted, true);
    assert.match(String((deadline.signal.reason as Error).message), /3000 ms of running time/);
  });

  test("dispose stops it", (t) => {
    t.mock.timers.enable({ apis: ["setInterval"] });
    const deadline = runningTimeout(1000, () => true);
    deadline.dispose();
    t.mock.timers.tick(5000);
    assert.equal(deadline.signal.aborted, false);
  });
});
