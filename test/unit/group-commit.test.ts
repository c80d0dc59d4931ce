// GroupCommit: items submitted while a batch runs wait and run together next, each settled with its own outcome.
import { test } from "node:test";
import assert from "node:assert/strict";
import { GroupCommit, type Settled } from "../../src/controller/db/group-commit.ts";

/** A runner whose batches finish when the test says; what each batch held. */
function controlledRunner() {
  const batches: number[][] = [];
  const pending: (() => void)[] = [];
  const run = async (items: readonly number[]): Promise<Settled<string>[]> => {
    batches.push([...items]);
    await new Promise<void>((resolve) => pending.push(resolve));
    if (items.includes(-1)) throw new Error("the whole batch failed");
    return items.map((n) => (n % 2 === 0 ? { ok: true, value: `even ${n}` } : { ok: false, error: new Error(`odd ${n}`) }));
  };
  const finishNext = async (): Promise<void> => {
    while (pending.length === 0) await new Promise((r) => setImmediate(r));
    pending.shift()?.();
  };
  return { batches, run, finishNext };
}

test("the first item runs at once; those submitted meanwhile run together next, each with its own outcome", async () => {
  const runner = controlledRunner();
  const commit = new GroupCommit(runner.run, { items: 10, weight: 100 });
  const results = [0, 1, 2, 3, 4].map((n) =>
    commit.submit(n).then(
      (value) => value,
      (err: Error) => err.message,
    ),
  );
  await runner.finishNext();
  await runner.finishNext();
  assert.deepEqual(await Promise.all(results), ["even 0", "odd 1", "even 2", "odd 3", "even 4"]);
  assert.deepEqual(runner.batches, [[0], [1, 2, 3, 4]]);
});

test("a batch takes at most the limits' items and weight, but an item heavier than the limit alone still runs", async () => {
  const runner = controlledRunner();
  const commit = new GroupCommit(runner.run, { items: 2, weight: 5 });
  const results = [commit.submit(0), commit.submit(2, 3), commit.submit(4, 3), commit.submit(6), commit.submit(8), commit.submit(10, 9)];
  for (let i = 0; i < 5; i++) await runner.finishNext();
  await Promise.all(results);
  assert.deepEqual(runner.batches, [[0], [2], [4, 6], [8], [10]]);
});

test("a batch that fails as a whole fails each of its items, and the next batch still runs", async () => {
  const runner = controlledRunner();
  const commit = new GroupCommit(runner.run, { items: 10, weight: 100 });
  const first = commit.submit(0);
  const failed = [commit.submit(-1), commit.submit(2)];
  await runner.finishNext();
  await runner.finishNext();
  assert.equal(await first, "even 0");
  for (const result of failed) await assert.rejects(result, /the whole batch failed/);
  const later = commit.submit(4);
  await runner.finishNext();
  assert.equal(await later, "even 4");
});
