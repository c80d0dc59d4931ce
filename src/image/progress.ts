// How long-running set-up steps report what they do: one line per step, with the time it took.
export interface Progress {
  /** A step is starting. */
  step(message: string): void;
  /** A step was not needed (the idempotent case). */
  skip(message: string): void;
  /** The current step finished. */
  done(message: string): void;
}

export function consoleProgress(write: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Progress {
  let started = performance.now();
  return {
    step(message) {
      started = performance.now();
      write(`  -> ${message}`);
    },
    skip(message) {
      write(`  ok ${message}`);
    },
    done(message) {
      write(`  ok ${message} (${((performance.now() - started) / 1000).toFixed(1)}s)`);
    },
  };
}

export const silentProgress: Progress = { step() {}, skip() {}, done() {} };
