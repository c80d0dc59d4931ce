// Group commit: work items that would each run a transaction of their own, taken together into one while an
// earlier one runs. The first item starts at once; those submitted meanwhile wait and are run together next,
// each still settled with its own outcome. FleetStore places creates so: on PostgreSQL each placement holds
// a lock that every other create (of every controller) waits for, and a batch holds it once for all of them.

/** An item's own outcome within its batch. */
export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

interface Waiting<I, T> {
  item: I;
  weight: number;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

export interface GroupCommitLimits {
  /** At most this many items in one batch. */
  items: number;
  /** At most this much weight in one batch (FleetStore: VMs, which bound a statement's parameters); an item heavier alone still runs, alone. */
  weight: number;
}

export class GroupCommit<I, T> {
  private readonly waiting: Waiting<I, T>[] = [];
  private running = false;

  /** `run` settles each item of a batch (`[i]` is `items[i]`'s); if it throws, every item of the batch fails with that. */
  constructor(
    private readonly run: (items: readonly I[]) => Promise<Settled<T>[]>,
    private readonly limits: GroupCommitLimits,
  ) {}

  submit(item: I, weight = 1): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.waiting.push({ item, weight, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.waiting.length > 0) {
        const batch = this.nextBatch();
        try {
          const outcomes = await this.run(batch.map((w) => w.item));
          for (const [i, waiting] of batch.entries()) {
            const outcome = outcomes[i];
            if (outcome === undefined) waiting.reject(new Error(`A batch of ${batch.length} settled only ${outcomes.length}`));
            else if (outcome.ok) waiting.resolve(outcome.value);
            else waiting.reject(outcome.error);
          }
        } catch (err) {
          for (const waiting of batch) waiting.reject(err);
        }
      }
    } finally {
      this.running = false;
    }
  }

  /** The oldest waiting items, as many as the limits let go together (at least one). */
  private nextBatch(): Waiting<I, T>[] {
    let count = 0;
    let weight = 0;
    for (const waiting of this.waiting) {
      if (count > 0 && (count >= this.limits.items || weight + waiting.weight > this.limits.weight)) break;
      count++;
      weight += waiting.weight;
    }
    return this.waiting.splice(0, count);
  }
}
