// Background work that shares the event loop with requests: tasks run `width` at a time, and once they have
// held the loop for `budgetMs` since it last turned, the next ones wait until it has been round to its timers.
// Answers that arrive together (a heartbeat round's) are then handled a few per turn instead of all in one, so
// a request queued behind them waits a few milliseconds, not for all of them. The budget is wall time, so the
// work of other callbacks in the same turn counts too.

export interface LoopShareOptions {
  /** Tasks under way at once: 1 where a task is synchronous work on the loop (better-sqlite3). */
  width: number;
  /** How long tasks may hold the loop before letting it turn. */
  budgetMs: number;
}

export class LoopShare {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  /** When the current stretch of tasks began (performance.now()); undefined once the loop has turned since. */
  private stretchStart: number | undefined;
  /** The stretch used its budget: no task starts before the loop has been round to its timers. */
  private paused = false;

  constructor(private readonly options: LoopShareOptions) {}

  /** Runs `task` when its turn comes. A task must not wait on anything slow (a host): it holds its place meanwhile. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    await new Promise<void>((resolve) => {
      this.waiting.push(resolve);
      this.admit();
    });
    try {
      return await task();
    } finally {
      this.running--;
      this.admit();
    }
  }

  private admit(): void {
    while (!this.paused && this.waiting.length > 0 && this.running < this.options.width) {
      const now = performance.now();
      if (this.stretchStart === undefined) {
        this.stretchStart = now;
        // The loop reached its check phase: tasks after this are another stretch's (the loop may have idled).
        setImmediate(() => {
          if (!this.paused) this.stretchStart = undefined;
        });
      } else if (now - this.stretchStart >= this.options.budgetMs) {
        this.pause();
        return;
      }
      this.running++;
      (this.waiting.shift() as () => void)();
    }
  }

  /**
   * Resumes from a timer, not an immediate: an immediate set during the poll phase runs in the same loop
   * iteration, before the timers that wait (a request's deadline, the loop delay monitor's) get their turn.
   */
  private pause(): void {
    this.paused = true;
    setTimeout(() => {
      this.paused = false;
      this.stretchStart = undefined;
      this.admit();
    }, 0);
  }
}
