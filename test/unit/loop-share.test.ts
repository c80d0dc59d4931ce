import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { LoopShare } from "../../src/util/loop-share.ts";

/** Holds the loop for `ms`, as synchronous database work does. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

describe("LoopShare", () => {
  test("returns each task's value and passes its error on; a failed task does not stop the next", async () => {
    const share = new LoopShare({ width: 1, budgetMs: 5 });
    assert.equal(await share.run(async () => 42), 42);
    await assert.rejects(
      share.run(async () => {
        throw new Error("boom");
      }),
      /boom/,
    );
    assert.equal(await share.run(async () => "next"), "next");
  });

  test("runs at most `width` tasks at once, in call order", async () => {
    const share = new LoopShare({ width: 2, budgetMs: 1000 });
    let running = 0;
    let most = 0;
    const started: number[] = [];
    await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        share.run(async () => {
          started.push(i);
          most = Math.max(most, ++running);
          await new Promise((resolve) => setTimeout(resolve, 5));
          running--;
        }),
      ),
    );
    assert.equal(most, 2);
    assert.deepEqual(started, [0, 1, 2, 3, 4, 5]);
  });

  test("tasks queued together hold the loop for about the budget, then let its timers run", async () => {
    const share = new LoopShare({ width: 1, budgetMs: 5 });
    // A timer that counts the loop's turns through its timers phase.
    let turns = 0;
    let done = false;
    const count = (): void => {
      turns++;
      if (!done) setTimeout(count, 0);
    };
    setTimeout(count, 0);
    const seen: number[] = [];
    await Promise.all(
      Array.from({ length: 12 }, () =>
        share.run(async () => {
          seen.push(turns);
          busy(2);
        }),
      ),
    );
    done = true;
    const perTurn = new Map<number, number>();
    for (const turn of seen) perTurn.set(turn, (perTurn.get(turn) ?? 0) + 1);
    // 2 ms each within 5 ms: tasks start at 0, 2 and 4 ms, the fourth waits for the timers.
    assert.ok(Math.max(...perTurn.values()) <= 3, `tasks per turn: ${JSON.stringify([...perTurn])}`);
    assert.ok(perTurn.size >= 4, `12 tasks of 2 ms in ${perTurn.size} turns`);
  });

  test("a task after the loop went idle starts at once", async () => {
    const share = new LoopShare({ width: 1, budgetMs: 5 });
    await share.run(async () => busy(10));
    await new Promise((resolve) => setTimeout(resolve, 20));
    let ran = false;
    const run = share.run(async () => {
      ran = true;
    });
    await Promise.resolve();
    await Promise.resolve();
    assert.equal(ran, true, "started in the same turn");
    await run;
  });
});
