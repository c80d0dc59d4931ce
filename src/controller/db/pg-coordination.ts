// Events and leadership across controller processes sharing one PostgreSQL. Events: NOTIFY on one channel,
// received through LISTEN on a dedicated connection (the publisher hears its own events too). Leadership: a
// session-level advisory lock held on another dedicated connection; when the leader's process dies its
// session ends, the lock is released, and the next follower that tries takes it.
import pg from "pg";
import type { Logger } from "../../util/log.ts";
import { encodeEvent, ListenerSet, type EventListener, type FleetCoordination } from "./coordination.ts";

export const EVENTS_CHANNEL = "corral_events";
/** pg_try_advisory_lock key of the leader (fleet-store.ts holds another for placement). */
export const LEADERSHIP_LOCK_KEY = 726_133_002;

const RECONNECT_MS = 2000;

export class PostgresCoordination implements FleetCoordination {
  readonly shared = true;
  private readonly listeners: ListenerSet;
  private listenClient: pg.Client | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private leaderClient: pg.Client | undefined;
  private leading = false;
  private leadershipCheck: Promise<boolean> | undefined;
  private closed = false;

  private constructor(
    private readonly url: string,
    private readonly publishQuery: (payloads: readonly string[]) => Promise<void>,
    private readonly logger: Logger,
  ) {
    this.listeners = new ListenerSet(logger);
  }

  /** Resolves once this process listens, so no event published after it is missed. */
  static async open(url: string, publishQuery: (payloads: readonly string[]) => Promise<void>, logger: Logger): Promise<PostgresCoordination> {
    const coordination = new PostgresCoordination(url, publishQuery, logger);
    await coordination.listen();
    return coordination;
  }

  async publish(...events: object[]): Promise<void> {
    const payloads = events.map(encodeEvent);
    if (payloads.length > 0) await this.publishQuery(payloads);
  }

  subscribe(listener: EventListener): () => void {
    return this.listeners.add(listener);
  }

  private async listen(): Promise<void> {
    const client = this.dedicatedClient(() => {
      if (this.listenClient !== client) return;
      this.listenClient = undefined;
      this.scheduleReconnect();
    });
    client.on("notification", (message) => {
      if (message.channel === EVENTS_CHANNEL && message.payload !== undefined) this.listeners.deliver(message.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${EVENTS_CHANNEL}`);
    } catch (err) {
      await client.end().catch(() => undefined);
      throw err;
    }
    if (this.closed) {
      await client.end();
      return;
    }
    this.listenClient = client;
  }

  /** Events sent while the connection is down are lost: listeners must treat events as hints and re-read. */
  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer !== undefined) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.listen().catch((err: unknown) => {
        this.logger.warn({ err }, "Cannot listen for fleet events on PostgreSQL; retrying");
        this.scheduleReconnect();
      });
    }, RECONNECT_MS);
    this.reconnectTimer.unref();
  }

  tryAcquireLeadership(): Promise<boolean> {
    // One attempt at a time: two attempts at once would open two sessions.
    this.leadershipCheck ??= this.acquireLeadership().finally(() => {
      this.leadershipCheck = undefined;
    });
    return this.leadershipCheck;
  }

  private async acquireLeadership(): Promise<boolean> {
    if (this.closed) return false;
    try {
      if (this.leaderClient === undefined) {
        const client = this.dedicatedClient(() => {
          if (this.leaderClient !== client) return;
          this.leaderClient = undefined;
          this.leading = false;
        });
        await client.connect();
        this.leaderClient = client;
      }
      if (this.leading) {
        // The lock lives as long as the session: proving the session is alive proves the lock is held.
        await this.leaderClient.query("SELECT 1");
        return true;
      }
      const result = await this.leaderClient.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1::bigint) AS locked", [LEADERSHIP_LOCK_KEY]);
      this.leading = result.rows[0]?.locked === true;
      return this.leading;
    } catch (err) {
      this.logger.warn({ err }, "Cannot check the controller leadership on PostgreSQL: not leading");
      const client = this.leaderClient;
      this.leaderClient = undefined;
      this.leading = false;
      // Not awaited: ending a connection that already broke may never settle.
      client?.end().catch(() => undefined);
      return false;
    }
  }

  /** A connection of its own (not from the pool): LISTEN and session locks belong to one session. */
  private dedicatedClient(onLost: () => void): pg.Client {
    const client = new pg.Client({ connectionString: this.url });
    let lost = false;
    const lose = (err?: Error): void => {
      if (lost || this.closed) return;
      lost = true;
      if (err) this.logger.warn({ err }, "Lost a PostgreSQL connection of the controller");
      onLost();
    };
    client.on("error", lose);
    client.on("end", () => lose());
    return client;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.listeners.clear();
    await this.leadershipCheck?.catch(() => undefined);
    const clients = [this.listenClient, this.leaderClient].filter((c) => c !== undefined);
    this.listenClient = undefined;
    this.leaderClient = undefined;
    this.leading = false;
    await Promise.all(clients.map((c) => c.end()));
  }
}
