// The app's one /ws connection: reconnects with backoff, re-sends stats subscriptions after a reconnect, and
// hands every message to whoever listens. Also keeps the last events for the overview page.
import type { VmRef, WsClientMessage, WsServerMessage } from "../../../src/protocol/controller.ts";

export type LiveStatus = "connecting" | "open" | "closed";

export interface LiveEvent {
  at: number;
  message: Exclude<WsServerMessage, { type: "vm-stats-updated" }>;
}

const MAX_EVENTS = 50;
const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30_000;

/** The wait before reconnect attempt `attempt` (0-based): 1 s doubling to 30 s, with up to 20 % jitter. */
export function backoffDelay(attempt: number, random: () => number = Math.random): number {
  const base = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(attempt, 10));
  return Math.round(base * (1 + 0.2 * random()));
}

export class LiveConnection {
  private socket: WebSocket | undefined;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private stopped = true;
  private readonly listeners = new Set<(message: WsServerMessage) => void>();
  private readonly statusListeners = new Set<() => void>();
  /** Subscriptions by "host/vm", counted: two views of one VM subscribe once. */
  private readonly subscriptions = new Map<string, { ref: VmRef; count: number }>();
  status: LiveStatus = "closed";
  events: readonly LiveEvent[] = [];

  constructor(private readonly url: () => string) {}

  start(): void {
    this.stopped = false;
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.socket?.close();
    this.socket = undefined;
    this.setStatus("closed");
  }

  /** Reconnects now (after the API key changed, say). */
  restart(): void {
    this.stop();
    this.attempt = 0;
    this.start();
  }

  onMessage(listener: (message: WsServerMessage) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  onStatus(listener: () => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  subscribeStats(ref: VmRef): () => void {
    const key = `${ref.hostId}/${ref.vmName}`;
    const entry = this.subscriptions.get(key);
    if (entry) entry.count += 1;
    else {
      this.subscriptions.set(key, { ref, count: 1 });
      this.send({ type: "subscribe-vm-stats", payload: ref });
    }
    return () => {
      const current = this.subscriptions.get(key);
      if (!current) return;
      current.count -= 1;
      if (current.count > 0) return;
      this.subscriptions.delete(key);
      this.send({ type: "unsubscribe-vm-stats", payload: ref });
    };
  }

  private send(message: WsClientMessage): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  private connect(): void {
    this.setStatus("connecting");
    const socket = new WebSocket(this.url());
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.setStatus("open");
      for (const { ref } of this.subscriptions.values()) this.send({ type: "subscribe-vm-stats", payload: ref });
    };
    socket.onmessage = (event) => {
      let message: WsServerMessage;
      try {
        message = JSON.parse(String(event.data)) as WsServerMessage;
      } catch {
        return;
      }
      if (message.type !== "vm-stats-updated") {
        this.events = [{ at: Date.now(), message }, ...this.events].slice(0, MAX_EVENTS);
      }
      for (const listener of this.listeners) listener(message);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.setStatus("closed");
      if (this.stopped) return;
      this.timer = setTimeout(() => this.connect(), backoffDelay(this.attempt));
      this.attempt += 1;
    };
  }

  private setStatus(status: LiveStatus): void {
    if (this.status === status) return;
    this.status = status;
    for (const listener of this.statusListeners) listener();
  }
}
