import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { setImmediate as tick } from "node:timers/promises";
import { KeyedLock } from "../../src/util/keyed-lock.ts";

/** A promise with its resolve/reject exposed, so tests decide when each operation finishes. */
function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await tick();
}

describe("KeyedLock", () => {
  test("returns the operation's value", async () => {
    const lock = new KeyedLock();
    assert.equal(await lock.run("a", async () => 42), 42);
    assert.deepEqual(await lock.run("a", async () => ({ ok: true })), { ok: true });
  });

  test("operations on one key run one at a time, in call order", async () => {
    const lock = new KeyedLock();
    const events: string[] = [];
    const gates = [deferred(), deferred(), deferred()];
    const runs = gates.map((gate, i) =>
      lock.run("vm", async () => {
        events.push(`start ${i}`);
        await gate.promise;
        events.push(`end ${i}`);
        return i;
      }),
    );
    await settle();
    assert.deepEqual(events, ["start 0"], "only the first runs while it is unfinished");
    // Finishing them out of order changes nothing: the second still waits for the first.
    gates[2]?.resolve();
    gates[1]?.resolve();
    await settle();
    assert.deepEqual(events, ["start 0"]);
    gates[0]?.resolve();
    assert.deepEqual(await Promise.all(runs), [0, 1, 2]);
    assert.deepEqual(events, ["start 0", "end 0", "start 1", "end 1", "start 2", "end 2"]);
  });

  test("never more than one operation per key at a time, under load", async () => {
    const lock = new KeyedLock();
    let active = 0;
    let maxActive = 0;
    let done = 0;
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        lock.run("k", async () => {
          active++;
          maxActive = Math.max(maxActive, active);
          await new Promise((r) => setTimeout(r, i % 3));
          active--;
          done++;
        }),
      ),
    );
    assert.equal(maxActive, 1);
    assert.equal(done, 50);
  });

  test("different keys run concurrently", async () => {
    const lock = new KeyedLock();
    const events: string[] = [];
    const a = deferred();
    const b = deferred();
    const runA = lock.run("a", async () => {
      events.push("start a");
      await a.promise;
      events.push("end a");
    });
    const runB = lock.run("b", async () => {
      events.push("start b");
      await b.promise;
      events.push("end b");
    });
    await settle();
    assert.deepEqual(events, ["start a", "start b"], "b starts while a is still running");
    b.resolve();
    await runB;
    assert.deepEqual(events, ["start a", "start b", "end b"], "b finishes first even though a started first");
    a.resolve();
    await runA;
  });

  test("a failing operation rejects its own caller with its error", async () => {
    const lock = new KeyedLock();
    const boom = new Error("boom");
    await assert.rejects(
      lock.run("k", async () => Promise.reject(boom)),
      (err) => err === boom,
    );
  });

  test("a failing operation does not block the next one on the key", async () => {
    const lock = new KeyedLock();
    const events: string[] = [];
    const gate = deferred();
    const failing = lock.run("k", async () => {
      events.push("start 1");
      await gate.promise;
      throw new Error("first failed");
    });
    const next = lock.run("k", async () => {
      events.push("start 2");
      return "second ok";
    });
    await settle();
    assert.deepEqual(events, ["start 1"], "the next still waits for the failing one to finish");
    gate.resolve();
    await assert.rejects(failing, { message: "first failed" });
    assert.equal(await next, "second ok");
    assert.deepEqual(events, ["start 1", "start 2"]);
  });

  test("an operation that throws synchronously is a rejection, and the key stays usable", async () => {
    const lock = new KeyedLock();
    const sync = (): Promise<number> => {
      throw new Error("sync throw");
    };
    await assert.rejects(lock.run("k", sync), { message: "sync throw" });
    assert.equal(await lock.run("k", async () => 7), 7);
  });

  test("a failure on one key does not affect another", async () => {
    const lock = new KeyedLock();
    const results = await Promise.allSettled([lock.run("a", async () => Promise.reject(new Error("a failed"))), lock.run("b", async () => "b ok")]);
    assert.equal(results[0]?.status, "rejected");
    assert.deepEqual(results[1], { status: "fulfilled", value: "b ok" });
  });

  test("keys leave no entry behind once their queue drains (one key per VM must not leak)", async () => {
    const lock = new KeyedLock();
    const tails = (lock as unknown as { tails: Map<string, unknown> }).tails;
    const gate = deferred();
    const first = lock.run("a", () => gate.promise);
    const second = lock.run("a", async () => Promise.reject(new Error("x")));
    const other = lock.run("b", async () => "b");
    assert.equal(tails.size, 2);
    assert.equal(await other, "b");
    assert.equal(tails.size, 1, "b is gone, a still has work");
    gate.resolve();
    await first;
    await assert.rejects(second);
    assert.equal(tails.size, 0);
    for (let i = 0; i < 100; i++) await lock.run(`vm-${i}`, async () => i);
    assert.equal(tails.size, 0);
  });

  test("an operation queued while another runs starts after it, even if queued from inside it", async () => {
    const lock = new KeyedLock();
    const events: string[] = [];
    let inner: Promise<void> | undefined;
    await lock.run("k", async () => {
      events.push("outer start");
      inner = lock.run("k", async () => {
        events.push("inner");
      });
      await settle();
      events.push("outer end");
    });
    await inner;
    assert.deepEqual(events, ["outer start", "outer end", "inner"]);
  });
});
