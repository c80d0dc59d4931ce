// Waiting on a promise with a deadline given as an AbortSignal.

/** Settles like `promise`, or rejects with `onAbort()` when `signal` aborts first. */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal, onAbort: () => Error): Promise<T> {
  if (signal.aborted) return Promise.reject(onAbort());
  return new Promise((resolve, reject) => {
    const abort = (): void => reject(onAbort());
    signal.addEventListener("abort", abort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", abort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", abort);
        reject(err);
      },
    );
  });
}

/** How often `runningTimeout` looks whether its clock runs. */
const RUNNING_TICK_MS = 1000;

/**
 * A deadline that only counts time while `running()` says so (checked every second): a guest whose vCPUs are
 * stopped (paused, frozen by its disk) cannot be late. `dispose` when the wait is over.
 */
export function runningTimeout(ms: number, running: () => boolean): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  let left = ms;
  const timer = setInterval(() => {
    if (running()) left -= RUNNING_TICK_MS;
    if (left <= 0) {
      clearInterval(timer);
      controller.abort(new Error(`Timed out after ${ms} ms of running time`));
    }
  }, RUNNING_TICK_MS);
  timer.unref();
  return { signal: controller.signal, dispose: () => clearInterval(timer) };
}
