// What controller processes sharing one database coordinate through it: events every process receives (the
// /ws fan-out) and one leader (heartbeats and expiry run only there). With SQLite there is one process, so
// events stay local and it always leads; pg-coordination.ts does the same across processes on PostgreSQL.
import type { Logger } from "../../util/log.ts";

export type EventListener = (event: unknown) => void;

export interface FleetCoordination {
  /**
   * Whether other controller processes may use this database. When not (SQLite), an operation this process
   * did not start is abandoned for sure: no lease needs to run out before it is recovered.
   */
  readonly shared: boolean;
  /**
   * Sends small JSON events, in this order, to every subscriber of every process on this database, this one
   * included: one statement on PostgreSQL whatever their number (a create's changes are told in one round trip).
   */
  publish(...events: object[]): Promise<void>;
  /** Calls `listener` with each event, asynchronously; returns the function that unsubscribes it. */
  subscribe(listener: EventListener): () => void;
  /** True while this process leads; idempotent once it does. */
  tryAcquireLeadership(): Promise<boolean>;
  close(): Promise<void>;
}

/** PostgreSQL's NOTIFY takes payloads under 8000 bytes; SQLite keeps the same limit so code moves between them. */
export const MAX_EVENT_BYTES = 7999;

/** The event as its wire JSON, or an Error when it is too big to send. */
export function encodeEvent(event: object): string {
  const payload = JSON.stringify(event);
  const bytes = Buffer.byteLength(payload, "utf8");
  if (bytes > MAX_EVENT_BYTES) {
    throw new Error(
      `Cannot publish an event of ${bytes} bytes: events must be at most ${MAX_EVENT_BYTES} bytes (PostgreSQL NOTIFY's limit); send an id and let listeners read the rest`,
    );
  }
  return payload;
}

/** The listeners of one process; a listener that throws is logged and does not stop the others. */
export class ListenerSet {
  private readonly listeners = new Set<EventListener>();

  constructor(private readonly logger: Logger) {}

  add(listener: EventListener): () => void {
    const entry: EventListener = (event) => listener(event);
    this.listeners.add(entry);
    return () => {
      this.listeners.delete(entry);
    };
  }

  deliver(payload: string): void {
    let event: unknown;
    try {
      event = JSON.parse(payload);
    } catch (err) {
      this.logger.warn({ err, payload: payload.slice(0, 200) }, "Ignoring a fleet event that is not JSON");
      return;
    }
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (err) {
        this.logger.error({ err }, "A fleet event listener failed");
      }
    }
  }

  clear(): void {
    this.listeners.clear();
  }
}

/** One process on SQLite: events go straight to this process's listeners, and it always leads. */
export class LocalCoordination implements FleetCoordination {
  readonly shared = false;
  private readonly listeners: ListenerSet;

  constructor(logger: Logger) {
    this.listeners = new ListenerSet(logger);
  }

  async publish(...events: object[]): Promise<void> {
    const payloads = events.map(encodeEvent);
    queueMicrotask(() => {
      for (const payload of payloads) this.listeners.deliver(payload);
    });
  }

  subscribe(listener: EventListener): () => void {
    return this.listeners.add(listener);
  }

  async tryAcquireLeadership(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}
