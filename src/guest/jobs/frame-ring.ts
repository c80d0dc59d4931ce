// A background job's log: numbered frames (ids 1, 2, 3, ...) kept in a ring bounded in bytes. When it is
// full the oldest frames go; a reader whose place is gone is told how much it missed (a gap) and goes on
// with the oldest frame still kept. Readers wait for new frames without polling.
import { FRAME_OVERHEAD } from "../../protocol/jobs.ts";

/** A frame as the ring keeps it: output stays raw (Buffer) or decoded text until it is sent. */
export interface RingFrame<T> {
  id: number;
  value: T;
  /** Output bytes this frame carries (0 for started/exit). */
  bytes: number;
  /** Output bytes written up to and including this frame. */
  cumulative: number;
}

export interface Gap {
  /** The last dropped id: reading on after it gives the oldest frame kept. */
  lastId: number;
  frames: number;
  bytes: number;
  /** False when the reader's place was dropped so long ago that only a lower bound on `bytes` is known. */
  exact: boolean;
}

export type RingStep<T> = { kind: "frame"; frame: RingFrame<T> } | { kind: "gap"; gap: Gap } | { kind: "caught-up" };

/** How many dropped frames remember their place, so readers resuming from one learn exactly what they missed. */
const DROPPED_HISTORY = 4096;

export class FrameRing<T> {
  private frames: (RingFrame<T> | undefined)[] = [];
  private head = 0;
  private cost = 0;
  private nextFrameId = 1;
  private written = 0;
  private droppedBytes = 0;
  private droppedFrames = 0;
  /** `cumulative` of recently dropped frames, indexed by id % DROPPED_HISTORY (allocated on the first drop). */
  private droppedCumulative: Float64Array | undefined;
  private waiters: (() => void)[] = [];
  private isClosed = false;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < FRAME_OVERHEAD * 2) throw new RangeError(`Ring capacity ${capacity} is too small`);
  }

  get nextId(): number {
    return this.nextFrameId;
  }

  /** The oldest id still kept (nextId when the ring is empty). */
  get firstId(): number {
    return this.frames[this.head]?.id ?? this.nextFrameId;
  }

  get bytesWritten(): number {
    return this.written;
  }

  get bytesDropped(): number {
    return this.droppedBytes;
  }

  get framesDropped(): number {
    return this.droppedFrames;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Appends a frame carrying `bytes` of output; older frames make room. Returns the frame's id. */
  append(value: T, bytes: number): number {
    if (this.isClosed) throw new Error("The ring is closed");
    this.written += bytes;
    const frame: RingFrame<T> = { id: this.nextFrameId++, value, bytes, cumulative: this.written };
    this.frames.push(frame);
    this.cost += bytes + FRAME_OVERHEAD;
    // The newest frame always stays, even alone over capacity: callers keep frames smaller than the ring.
    while (this.cost > this.capacity && this.length > 1) this.dropOldest();
    this.wake();
    return frame.id;
  }

  /** What a reader that has seen every frame up to `afterId` gets next. */
  next(afterId: number): RingStep<T> {
    const first = this.firstId;
    if (afterId + 1 < first) return { kind: "gap", gap: this.gapAfter(afterId, first) };
    const index = this.head + (afterId + 1 - first);
    const frame = index < this.frames.length ? this.frames[index] : undefined;
    return frame ? { kind: "frame", frame } : { kind: "caught-up" };
  }

  /** Resolves at the next append, when the ring closes, or when `signal` aborts (the reader left). */
  changed(signal: AbortSignal): Promise<void> {
    if (this.isClosed || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter = (): void => {
        signal.removeEventListener("abort", leave);
        resolve();
      };
      const leave = (): void => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve();
      };
      signal.addEventListener("abort", leave, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** No more frames will come: waiting readers wake and finish. */
  close(): void {
    this.isClosed = true;
    this.wake();
  }

  private get length(): number {
    return this.frames.length - this.head;
  }

  private dropOldest(): void {
    const frame = this.frames[this.head] as RingFrame<T>;
    this.frames[this.head] = undefined;
    this.head++;
    this.cost -= frame.bytes + FRAME_OVERHEAD;
    this.droppedBytes += frame.bytes;
    this.droppedFrames++;
    this.droppedCumulative ??= new Float64Array(DROPPED_HISTORY);
    this.droppedCumulative[frame.id % DROPPED_HISTORY] = frame.cumulative;
    // Compact now and then, so the array does not grow with everything ever dropped.
    if (this.head >= 1024 && this.head * 2 >= this.frames.length) {
      this.frames = this.frames.slice(this.head);
      this.head = 0;
    }
  }

  private gapAfter(afterId: number, first: number): Gap {
    const lastId = first - 1;
    // Output written before the oldest kept frame = everything dropped so far.
    const droppedUpTo = this.droppedBytes;
    const remembered = lastId - afterId <= DROPPED_HISTORY - 1 || afterId === 0;
    let seen: number;
    if (afterId === 0) seen = 0;
    else if (remembered) seen = (this.droppedCumulative as Float64Array)[afterId % DROPPED_HISTORY] as number;
    else seen = (this.droppedCumulative as Float64Array)[(lastId - (DROPPED_HISTORY - 1)) % DROPPED_HISTORY] as number;
    return { lastId, frames: lastId - afterId, bytes: droppedUpTo - seen, exact: remembered };
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}
