import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { Reverter } from "../../src/util/reverter.ts";

describe("Reverter", () => {
  test("revert undoes the steps in reverse order", async () => {
    const done: string[] = [];
    const revert = new Reverter();
    revert.add("overlay", () => void done.push("overlay"));
    revert.add("sockets", () => void done.push("sockets"));
    revert.add("process", () => void done.push("process"));
    await revert.revert();
    assert.deepEqual(done, ["process", "sockets", "overlay"]);
  });

  test("asynchronous undo steps are awaited one after another", async () => {
    const events: string[] = [];
    const revert = new Reverter();
    for (const [name, ms] of [
      ["a", 15],
      ["b", 1],
      ["c", 8],
    ] as const) {
      revert.add(name, async () => {
        events.push(`start ${name}`);
        await new Promise((r) => setTimeout(r, ms));
        events.push(`end ${name}`);
      });
    }
    await revert.revert();
    assert.deepEqual(events, ["start c", "end c", "start b", "end b", "start a", "end a"]);
  });

  test("commit forgets the steps: a later revert undoes nothing", async () => {
    const done: string[] = [];
    const revert = new Reverter();
    revert.add("a", () => void done.push("a"));
    revert.add("b", () => void done.push("b"));
    revert.commit();
    await revert.revert();
    assert.deepEqual(done, []);
  });

  test("steps added after a commit are undone, and only those", async () => {
    const done: string[] = [];
    const revert = new Reverter();
    revert.add("before", () => void done.push("before"));
    revert.commit();
    revert.add("after", () => void done.push("after"));
    await revert.revert();
    assert.deepEqual(done, ["after"]);
  });

  test("each step is undone once: a second revert does nothing", async () => {
    let count = 0;
    const revert = new Reverter();
    revert.add("x", () => {
      count++;
    });
    await revert.revert();
    await revert.revert();
    assert.equal(count, 1);
  });

  test("a failing undo is reported with its name and error, and the others still run", async () => {
    const done: string[] = [];
    const reported: [string, unknown][] = [];
    const syncError = new Error("cannot remove socket");
    const asyncError = new Error("process would not die");
    const revert = new Reverter((what, err) => reported.push([what, err]));
    revert.add("overlay", () => void done.push("overlay"));
    revert.add("sockets", () => {
      throw syncError;
    });
    revert.add("folder", () => void done.push("folder"));
    revert.add("process", async () => {
      await Promise.resolve();
      throw asyncError;
    });
    await revert.revert();
    assert.deepEqual(done, ["folder", "overlay"]);
    assert.deepEqual(
      reported.map(([what]) => what),
      ["process", "sockets"],
    );
    assert.equal(reported[0]?.[1], asyncError);
    assert.equal(reported[1]?.[1], syncError);
  });

  test("revert itself never rejects, even without an error handler", async () => {
    const done: string[] = [];
    const revert = new Reverter();
    revert.add("ok", () => void done.push("ok"));
    revert.add("bad", () => {
      throw new Error("bad");
    });
    await assert.doesNotReject(revert.revert());
    assert.deepEqual(done, ["ok"]);
  });

  test("non-Error throws are reported as they were thrown", async () => {
    const reported: unknown[] = [];
    const revert = new Reverter((_what, err) => reported.push(err));
    revert.add("string", () => {
      throw "plain string";
    });
    revert.add("rejected", () => Promise.reject(42));
    await revert.revert();
    assert.deepEqual(reported, [42, "plain string"]);
  });

  test("a step added by an undo during revert is undone in the same revert", async () => {
    const done: string[] = [];
    const revert = new Reverter();
    revert.add("first", () => void done.push("first"));
    revert.add("second", () => {
      done.push("second");
      revert.add("late", () => void done.push("late"));
    });
    await revert.revert();
    assert.deepEqual(done, ["second", "late", "first"]);
  });

  test("an empty reverter reverts to nothing", async () => {
    const reported: string[] = [];
    const revert = new Reverter((what) => reported.push(what));
    await revert.revert();
    assert.deepEqual(reported, []);
  });
});
