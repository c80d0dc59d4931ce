// The few things the fleet store says differently to SQLite and to PostgreSQL; every other query is kysely's
// and the same for both.
import { sql, type RawBuilder, type Transaction } from "kysely";
import { EVENTS_CHANNEL } from "./pg-coordination.ts";
import type { FleetDatabase } from "./schema.ts";

export type BackendName = "sqlite" | "postgres";

export interface StoreDialect {
  readonly name: BackendName;
  /**
   * Taken first in a transaction that places VMs or removes a host, held until it ends: such transactions
   * run one at a time across every process on the database, so two placements never book the same room.
   * With `events` (JSON payloads) where `eventsInTransaction`: they are also sent when the transaction
   * commits, and only if it does (in the same round trip as the lock).
   */
  lockPlacement(trx: Transaction<FleetDatabase>, events?: readonly string[]): Promise<void>;
  /** Whether lockPlacement sends events with the transaction (PostgreSQL's NOTIFY); if not, they are the caller's to send after it. */
  readonly eventsInTransaction: boolean;
  /** Whether a WITH clause may hold an INSERT (PostgreSQL): two writes in one statement, one round trip. */
  readonly writesInWith: boolean;
  /** The JSON text column as a document the dialect reads fields of: parsed once per row, not once per field. */
  jsonDocument(column: "hosts.info"): RawBuilder<unknown>;
  /** An integer field of a column made by `jsonDocument` (null where the document is null). */
  jsonInteger(document: string, key: string): RawBuilder<number | string | null>;
}

/** pg_advisory_xact_lock key of placements (pg-coordination.ts holds another for leadership). */
export const PLACEMENT_LOCK_KEY = 726_133_001;

export const SQLITE: StoreDialect = {
  name: "sqlite",
  // kysely's SqliteDialect runs every query of the process on one connection, a transaction holding it to
  // the end: transactions are already one at a time.
  lockPlacement: async () => undefined,
  eventsInTransaction: false,
  writesInWith: false,
  // json_extract reads JSON text itself.
  jsonDocument: (column) => sql`${sql.ref(column)}`,
  jsonInteger: (document, key) => sql`json_extract(${sql.ref(document)}, ${sql.lit(`$.${key}`)})`,
};

export const POSTGRES: StoreDialect = {
  name: "postgres",
  lockPlacement: async (trx, events = []) => {
    const lock = sql`pg_advisory_xact_lock(${sql.lit(PLACEMENT_LOCK_KEY)})`;
    // NOTIFY is transactional: queued now, delivered at commit. Evaluated once, whether it comes before or after the lock.
    if (events.length === 0) await sql`SELECT ${lock}`.execute(trx);
    else await sql`SELECT ${lock}, (SELECT count(pg_notify(${EVENTS_CHANNEL}, payload)) FROM unnest(${events}::text[]) AS payload)`.execute(trx);
  },
  eventsInTransaction: true,
  writesInWith: true,
  // Casting text to json parses it: done once per row in a subquery (six fields of 1,000 hosts took 7 ms,
  // parsed once 2 ms).
  jsonDocument: (column) => sql`CAST(${sql.ref(column)} AS json)`,
  jsonInteger: (document, key) => sql`CAST(${sql.ref(document)} ->> ${sql.lit(key)} AS bigint)`,
};
