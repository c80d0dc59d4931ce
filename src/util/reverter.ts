// Multi-step setup with its undo beside each step: on failure part-way, `revert` undoes what was done, in
// reverse order, so nothing is left behind.
export type Undo = () => void | Promise<void>;

export class Reverter {
  private readonly steps: { what: string; undo: Undo }[] = [];

  constructor(private readonly onUndoError: (what: string, err: unknown) => void = () => undefined) {}

  add(what: string, undo: Undo): void {
    this.steps.push({ what, undo });
  }

  /** The setup succeeded: forget the undo steps. */
  commit(): void {
    this.steps.length = 0;
  }

  async revert(): Promise<void> {
    while (this.steps.length > 0) {
      const step = this.steps.pop() as { what: string; undo: Undo };
      try {
        await step.undo();
      } catch (err) {
        this.onUndoError(step.what, err);
      }
    }
  }
}
