// Whether a live VM's agent is ready: the second lifecycle of a VM incarnation, beside its record's
// (src/protocol/vm-lifecycle.ts). That one is stored and on the wire; this one lives and dies with the
// machine's process (a restarted daemon connects again), so it is kept here, in the runtime, with its own
// table. Every move goes through `move`; a bring-up is an attempt, and only the latest attempt's outcome
// counts (a reboot during a bring-up starts another, and the first one's late success must not say "ready").

export type ReadinessState =
  /** The machine runs; no bring-up started yet, or the agent restarts (a reboot). */
  | "awaiting"
  /** Connecting to the agent, handing it the VM's identity, running the agent-ready steps. */
  | "connecting"
  /** The agent answered and holds the VM's identity. */
  | "ready"
  /** The bring-up failed (the agent never answered, the daemon stopped): the VM is being ended. */
  | "failed";

export const READINESS_TRANSITIONS: Readonly<Record<ReadinessState, readonly ReadinessState[]>> = {
  awaiting: ["connecting"],
  // Again from "connecting": a reboot during a bring-up starts a new attempt.
  connecting: ["ready", "failed", "awaiting", "connecting"],
  ready: ["awaiting", "connecting"],
  failed: ["awaiting", "connecting"],
};

export function canMoveReadiness(from: ReadinessState, to: ReadinessState): boolean {
  return READINESS_TRANSITIONS[from].includes(to);
}

export class Readiness {
  private current: ReadinessState = "awaiting";
  private attempt = 0;
  private everReady = false;
  private settled: Promise<void> = Promise.resolve();

  /** `created`: this launch made the VM (booted or cloned it new), so its first bring-up is fresh. */
  constructor(private readonly created: boolean) {}

  get state(): ReadinessState {
    return this.current;
  }

  get isReady(): boolean {
    return this.current === "ready";
  }

  /**
   * The VM was created by this launch and has not been ready yet: the guest holds nothing the daemon
   * delivered before, so an agent-ready step may skip asking it what it has.
   */
  get fresh(): boolean {
    return this.created && !this.everReady;
  }

  /** Settles when the latest bring-up did (rejects when it failed). */
  get whenSettled(): Promise<void> {
    return this.settled;
  }

  /** The agent restarts (a reboot): not ready until the next bring-up. */
  restarting(): void {
    if (this.current !== "awaiting") this.move("awaiting");
  }

  /**
   * Starts a bring-up: `run` gets its attempt number and calls `reached(attempt, "ready")` at the moment the
   * VM counts as ready; a rejection is the attempt's failure.
   */
  begin(run: (attempt: number) => Promise<void>): Promise<void> {
    const attempt = ++this.attempt;
    this.move("connecting");
    const settled = run(attempt).then(
      () => void this.reached(attempt, "ready"),
      (err: unknown) => {
        this.reached(attempt, "failed");
        throw err;
      },
    );
    settled.catch(() => undefined);
    this.settled = settled;
    return settled;
  }

  /** Moves to the attempt's outcome, unless a later attempt (or a restart) took over; says whether it did. */
  reached(attempt: number, to: "ready" | "failed"): boolean {
    if (attempt !== this.attempt || this.current !== "connecting") return false;
    this.move(to);
    if (to === "ready") this.everReady = true;
    return true;
  }

  private move(to: ReadinessState): void {
    if (!canMoveReadiness(this.current, to)) throw new Error(`Agent readiness cannot move from ${this.current} to ${to}`);
    this.current = to;
  }
}
