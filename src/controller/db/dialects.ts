// The few things the fleet store says differently to SQLite and to PostgreSQL; every other query is kysely's
// and the same for both.
import { sql, type RawBuilder, type Transaction } from "kysely";
import { EVENTS_CHANNEL } from "./pg-coordination.ts";
import { PLACEMENT_COLUMNS, type PlacementRow } from "./rows.ts";
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
  /**
   * lockPlacement and a read of these hosts' placement rows as they are once the lock is held, in one round
   * trip where the dialect can (undefined where it cannot). On PostgreSQL the rows are locked FOR UPDATE, which
   * reads each as the last transaction to change it left it, even one that committed while this statement
   * waited for the lock. With no row (none of the hosts exists) the lock may not have been taken: take it with
   * lockPlacement before relying on it.
   */
  lockPlacementReading(trx: Transaction<FleetDatabase>, hostIds: readonly string[], events?: readonly string[]): Promise<PlacementRow[] | undefined>;
  /** Whether lockPlacement sends events with the transaction (PostgreSQL's NOTIFY); if not, they are the caller's to send after it. */
  readonly eventsInTransaction: boolean;
  /** Whether a WITH clause may hold an INSERT (PostgreSQL): two writes in one statement, one round trip. */
  readonly writesInWith: boolean;
  /** The JSON text column as a document the dialect reads fields of: parsed once per row, not once per field. */
  jsonDocument(column: "hosts.info"): RawBuilder<unknown>;
  /** An integer field of a column made by `jsonDocument` (null where the document is null). */
  jsonInteger(document: string, key: string): RawBuilder<number | string | null>;
}

/**
 * PostgreSQL's placement lock as a one-row subquery, with `events` queued by NOTIFY in it (transactional:
 * delivered at commit, never for a rollback; PostgreSQL delivers a payload repeated in one transaction once).
 */
function pgPlacementLock(events: readonly string[]): RawBuilder<unknown> {
  const notify = events.length === 0 ? sql`0` : sql`(SELECT count(pg_notify(${EVENTS_CHANNEL}, payload)) FROM unnest(${[...events]}::text[]) AS payload)`;
  return sql`(SELECT pg_advisory_xact_lock(${sql.lit(PLACEMENT_LOCK_KEY)}) AS locked, ${notify} AS notified) AS placement_lock`;
}

/** pg_advisory_xact_lock key of placements (pg-coordination.ts holds another for leadership). */
export const PLACEMENT_LOCK_KEY = 726_133_001;

export const SQLITE: StoreDialect = {
  name: "sqlite",
  // kysely's SqliteDialect runs every query of the process on one connection, a transaction holding it to
  // the end: transactions are already one at a time.
  lockPlacement: async () => undefined,
  lockPlacementReading: async () => undefined,
  eventsInTransaction: false,
  writesInWith: false,
  // json_extract reads JSON text itself.
  jsonDocument: (column) => sql`${sql.ref(column)}`,
  jsonInteger: (document, key) => sql`json_extract(${sql.ref(document)}, ${sql.lit(`$.${key}`)})`,
};

export const POSTGRES: StoreDialect = {
  name: "postgres",
  lockPlacement: async (trx, events = []) => {
    await sql`SELECT * FROM ${pgPlacementLock(events)}`.execute(trx);
  },
  lockPlacementReading: async (trx, hostIds, events = []) => {
    // The lock's subquery yields its one row only once the lock is held, so every joined row is locked (and,
    // if a placement changed it meanwhile, read again at its newest version) after that.
    const columns = sql.join(PLACEMENT_COLUMNS.map((column) => sql.ref(`hosts.${column}`)));
    const { rows } = await sql<PlacementRow>`SELECT ${columns} FROM ${pgPlacementLock(events)} CROSS JOIN hosts
      WHERE hosts.id = ANY(${[...hostIds]}::text[]) FOR UPDATE OF hosts`.execute(trx);
    return rows;
  },
  eventsInTransaction: true,
  writesInWith: true,
  // Casting text to json parses it: done once per row in a subquery (six fields of 1,000 hosts took 7 ms,
  // parsed once 2 ms).
  jsonDocument: (column) => sql`CAST(${sql.ref(column)} AS json)`,
  jsonInteger: (document, key) => sql`CAST(${sql.ref(document)} ->> ${sql.lit(key)} AS bigint)`,
};
