// One `/fs/watch` stream: which raw changes become events (types, patterns), merging within the debounce
// window, numbering, and when the stream is over (max_events, one_shot). Writes SSE text; knows no HTTP.
import { basename, relative } from "node:path";
import type { WatchEvent, WatchSpec } from "../../protocol/files.ts";
import { matchesAny } from "../../protocol/path-patterns.ts";
import { formatSseEvent } from "../../protocol/sse.ts";
import type { RawWatchEvent } from "./tree-watch.ts";

export interface WatchOutput {
  /** Returns how many bytes the consumer has not taken yet. */
  write(text: string): number;
  /** The stream is complete (limit reached, or the consumer is too slow to keep up). */
  end(): void;
}

/** A consumer this far behind is cut off: events must not pile up in the agent's memory. */
export const MAX_UNREAD_BYTES = 4 * 1024 * 1024;

interface Pending {
  event: RawWatchEvent;
  timer: ReturnType<typeof setTimeout>;
}

/** The type a burst of events on one path is reported as: a creation stays one, the last word counts otherwise. */
export function mergeTypes(first: RawWatchEvent["type"], next: RawWatchEvent["type"]): RawWatchEvent["type"] {
  if (first === "create" && (next === "write" || next === "chmod")) return "create";
  return next;
}

export class WatchSession {
  private nextId: number;
  private sent = 0;
  private done = false;
  private readonly pending = new Map<string, Pending>();

  constructor(
    private readonly spec: WatchSpec,
    private readonly output: WatchOutput,
  ) {
    this.nextId = spec.lastEventId + 1;
  }

  get finished(): boolean {
    return this.done;
  }

  accept(event: RawWatchEvent): void {
    if (this.done || !this.matchesPatterns(event)) return;
    if (this.spec.debounceMs <= 0) return this.send(event);
    const pending = this.pending.get(event.path);
    if (pending) {
      pending.event = { ...event, type: mergeTypes(pending.event.type, event.type) };
      return;
    }
    const timer = setTimeout(() => {
      const due = this.pending.get(event.path);
      this.pending.delete(event.path);
      if (due) this.send(due.event);
    }, this.spec.debounceMs);
    this.pending.set(event.path, { event, timer });
  }

  /** Ends the stream: pending (debounced) events are dropped. */
  close(): void {
    this.done = true;
    for (const { timer } of this.pending.values()) clearTimeout(timer);
    this.pending.clear();
  }

  /** An error the client should see (sent as an event of type "error"), then the end. */
  fail(message: string, path = ""): void {
    if (this.done) return;
    this.write({ id: this.nextId++, type: "error", path, timestamp: new Date().toISOString(), size: 0, isDir: false, message });
    this.finish();
  }

  private matchesPatterns(event: RawWatchEvent): boolean {
    if (this.spec.patterns.length === 0) return true;
    const below = relative(event.root, event.path);
    return matchesAny(this.spec.patterns, below === "" ? basename(event.path) : below);
  }

  private send(event: RawWatchEvent): void {
    if (this.done) return;
    if (this.spec.events.length > 0 && !(this.spec.events as string[]).includes(event.type)) return;
    const unread = this.write({ id: this.nextId++, type: event.type, path: event.path, timestamp: new Date().toISOString(), size: event.size, isDir: event.isDir });
    this.sent++;
    if (this.spec.maxEvents > 0 && this.sent >= this.spec.maxEvents) return this.finish();
    if (unread > MAX_UNREAD_BYTES) this.fail("The client is not reading events fast enough: the watch was stopped");
  }

  private write(event: WatchEvent): number {
    return this.output.write(formatSseEvent({ id: String(event.id), event: "watch", data: JSON.stringify(event) }));
  }

  private finish(): void {
    this.close();
    this.output.end();
  }
}
