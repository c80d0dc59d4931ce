import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { FrameRing, type RingStep } from "../../../src/guest/jobs/frame-ring.ts";
import { FRAME_OVERHEAD } from "../../../src/protocol/jobs.ts";

/** Everything a reader starting after `afterId` gets until caught up. */
function readAll<T>(ring: FrameRing<T>, afterId: number): RingStep<T>[] {
  const steps: RingStep<T>[] = [];
  let cursor = afterId;
  for (;;) {
    const step = ring.next(cursor);
    if (step.kind === "caught-up") return steps;
    steps.push(step);
    cursor = step.kind === "gap" ? step.gap.lastId : step.frame.id;
  }
}

function ids<T>(steps: RingStep<T>[]): (number | string)[] {
  return steps.map((s) => (s.kind === "frame" ? s.frame.id : s.kind === "gap" ? `gap..${s.gap.lastId}` : "?"));
}

describe("FrameRing", () => {
  test("ids start at 1 and increase by one per frame", () => {
    const ring = new FrameRing<string>(10_000);
    assert.equal(ring.nextId, 1);
    assert.equal(ring.append("a", 1), 1);
    assert.equal(ring.append("b", 1), 2);
    assert.equal(ring.append("c", 1), 3);
    assert.equal(ring.nextId, 4);
    assert.equal(ring.firstId, 1);
    assert.deepEqual(ids(readAll(ring, 0)), [1, 2, 3]);
    assert.deepEqual(
      readAll(ring, 0).map((s) => (s.kind === "frame" ? s.frame.value : "")),
      ["a", "b", "c"],
    );
  });

  test("reading after N gives exactly the frames after N", () => {
    const ring = new FrameRing<number>(10_000);
    for (let i = 1; i <= 10; i++) ring.append(i, 10);
    assert.deepEqual(ids(readAll(ring, 6)), [7, 8, 9, 10]);
    assert.deepEqual(ids(readAll(ring, 10)), []);
    assert.deepEqual(ids(readAll(ring, 99)), [], "a place beyond the end waits for later frames");
    ring.append(11, 1);
    assert.deepEqual(ids(readAll(ring, 10)), [11]);
  });

  test("the ring keeps its byte budget (output plus overhead per frame) by dropping the oldest frames", () => {
    const capacity = 10 * (100 + FRAME_OVERHEAD);
    const ring = new FrameRing<number>(capacity);
    for (let i = 1; i <= 25; i++) ring.append(i, 100);
    assert.equal(ring.firstId, 16, "the newest 10 frames are kept");
    assert.equal(ring.bytesWritten, 2500);
    assert.equal(ring.bytesDropped, 1500);
    assert.equal(ring.framesDropped, 15);
  });

  test("a reader whose place was dropped gets one gap saying what it missed, then the oldest kept frames", () => {
    const ring = new FrameRing<number>(4 * (100 + FRAME_OVERHEAD));
    for (let i = 1; i <= 10; i++) ring.append(i, 100);
    assert.equal(ring.firstId, 7);
    const fromStart = readAll(ring, 0);
    assert.deepEqual(ids(fromStart), ["gap..6", 7, 8, 9, 10]);
    const gap = fromStart[0];
    assert.ok(gap?.kind === "gap");
    assert.deepEqual(gap.gap, { lastId: 6, frames: 6, bytes: 600, exact: true });

    const resumed = readAll(ring, 4);
    assert.deepEqual(ids(resumed), ["gap..6", 7, 8, 9, 10]);
    assert.ok(resumed[0]?.kind === "gap");
    assert.deepEqual(resumed[0].gap, { lastId: 6, frames: 2, bytes: 200, exact: true }, "frames 5 and 6 were missed");
    assert.deepEqual(ids(readAll(ring, 6)), [7, 8, 9, 10], "no gap right at the edge");
  });

  test("gap byte counts follow the actual sizes of the dropped frames", () => {
    const ring = new FrameRing<number>(2 * (1000 + FRAME_OVERHEAD));
    const sizes = [10, 20, 30, 40, 1000, 1000];
    for (const size of sizes) ring.append(size, size);
    assert.equal(ring.firstId, 5);
    const step = ring.next(1);
    assert.ok(step.kind === "gap");
    assert.deepEqual(step.gap, { lastId: 4, frames: 3, bytes: 20 + 30 + 40, exact: true });
  });

  test("a frame larger than the ring is still kept alone (the newest frame never goes)", () => {
    const ring = new FrameRing<string>(2 * FRAME_OVERHEAD + 100);
    ring.append("small", 10);
    ring.append("huge", 5000);
    assert.equal(ring.firstId, 2);
    assert.deepEqual(ids(readAll(ring, 1)), [2]);
  });

  test("a place dropped long ago reports a lower bound on the missed bytes", () => {
    const ring = new FrameRing<number>(2 * (1 + FRAME_OVERHEAD));
    for (let i = 1; i <= 6000; i++) ring.append(i, 1);
    assert.equal(ring.firstId, 5999);
    const recent = ring.next(5000);
    assert.ok(recent.kind === "gap");
    assert.deepEqual(recent.gap, { lastId: 5998, frames: 998, bytes: 998, exact: true });
    const old = ring.next(10);
    assert.ok(old.kind === "gap");
    assert.equal(old.gap.frames, 5988);
    assert.equal(old.gap.exact, false);
    assert.ok(old.gap.bytes < 5988 && old.gap.bytes >= 4000, `lower bound ${old.gap.bytes}`);
  });

  test("memory stays flat over many drops (the backing array is compacted)", () => {
    const ring = new FrameRing<number>(10 * (1 + FRAME_OVERHEAD));
    for (let i = 1; i <= 100_000; i++) ring.append(i, 1);
    const backing = (ring as unknown as { frames: unknown[] }).frames.length;
    assert.ok(backing < 3000, `backing array has ${backing} slots`);
    assert.deepEqual(ids(readAll(ring, 99_995)), [99_996, 99_997, 99_998, 99_999, 100_000]);
  });

  test("changed() wakes waiting readers on append and on close, and lets a leaving reader go", async () => {
    const ring = new FrameRing<number>(1000);
    const reader = new AbortController();
    let woke = false;
    const waiting = ring.changed(reader.signal).then(() => (woke = true));
    await Promise.resolve();
    assert.equal(woke, false);
    ring.append(1, 1);
    await waiting;
    assert.equal(woke, true);

    const leaving = new AbortController();
    const left = ring.changed(leaving.signal);
    leaving.abort();
    await left;
    assert.equal((ring as unknown as { waiters: unknown[] }).waiters.length, 0, "a reader that left is forgotten");

    const closing = ring.changed(new AbortController().signal);
    ring.close();
    await closing;
    assert.equal(ring.closed, true);
    await ring.changed(new AbortController().signal); // resolves at once once closed
    assert.throws(() => ring.append(2, 1), /closed/);
  });

  test("rejects a capacity that cannot hold a frame", () => {
    assert.throws(() => new FrameRing(FRAME_OVERHEAD), RangeError);
  });
});
