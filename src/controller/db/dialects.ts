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
   */
  lockPlacement(trx: Transaction<FleetDatabase>): Promise<void>;
  /**
   * lockPlacement and a read of these hosts' placement rows as they are once the lock is held, in one round
   * trip where the dialect can (undefined where it cannot). On PostgreSQL the rows are locked FOR UPDATE, which
   * reads each as the last transaction to change it left it, even one that committed while this statement
   * waited for the lock. With no row (none of the hosts exists) the lock may not have been taken: take it with
   * lockPlacement before relying on it.
   */
  lockPlacementReading(trx: Transaction<FleetDatabase>, hostIds: readonly string[]): Promise<PlacementRow[] | undefined>;
  /** Whether `sendOnCommit` can send events with a transaction (PostgreSQL's NOTIFY); if not, they are the caller's to send after it. */
  readonly eventsInTransaction: boolean;
  /** Where `eventsInTransaction`: queues the events (JSON payloads), delivered when the transaction commits, never if it rolls back. */
  sendOnCommit(trx: Transaction<FleetDatabase>, events: readonly string[]): Promise<void>;
  /** Whether a WITH clause may hold an INSERT (PostgreSQL): two writes in one statement, one round trip. */
  readonly writesInWith: boolean;
  /** The JSON text column as a document the dialect reads fields of: parsed once per row, not once per field. */
  jsonDocument(column: "hosts.info"): RawBuilder<unknown>;
  /** An integer field of a column made by `jsonDocument` (null where the document is null). */
  jsonInteger(document: string, key: string): RawBuilder<number | string | null>;
}

/** pg_advisory_xact_lock key of placements (pg-coordination.ts holds another for leadership). */
export const PLACEMENT_LOCK_KEY = 726_133_001;

/** PostgreSQL's placement lock as a one-row subquery. */
const PG_PLACEMENT_LOCK = sql`(SELECT pg_advisory_xact_lock(${sql.lit(PLACEMENT_LOCK_KEY)}) AS locked) AS placement_lock`;

export const SQLITE: StoreDialect = {
  name: "sqlite",
  // kysely's SqliteDialect runs every query of the process on one connection, a transaction holding it to
  // the end: transactions are already one at a time.
  lockPlacement: async () => undefined,
  lockPlacementReading: async () => undefined,
  eventsInTransaction: false,
  sendOnCommit: async () => {
    throw new Error("SQLite's store sends events after the commit (eventsInTransaction is false)");
  },
  writesInWith: false,
  // json_extract reads JSON text itself.
  jsonDocument: (column) => sql`${sql.ref(column)}`,
  jsonInteger: (document, key) => sql`json_extract(${sql.ref(document)}, ${sql.lit(`$.${key}`)})`,
};

export const POSTGRES: StoreDialect = {
  name: "postgres",
  lockPlacement: async (trx) => {
    await sql`SELECT * FROM ${PG_PLACEMENT_LOCK}`.execute(trx);
  },
  lockPlacementReading: async (trx, hostIds) => {
    // The lock's subquery yields its one row only once the lock is held, so every joined row is locked (and,
    // if a placement changed it meanwhile, read again at its newest version) after that.
    const columns = sql.join(PLACEMENT_COLUMNS.map((column) => sql.ref(`hosts.${column}`)));
    const { rows } = await sql<PlacementRow>`SELECT ${columns} FROM ${PG_PLACEMENT_LOCK} CROSS JOIN hosts
      WHERE hosts.id = ANY(${[...hostIds]}::text[]) FOR UPDATE OF hosts`.execute(trx);
    return rows;
  },
  eventsInTransaction: true,
  // NOTIFY is transactional (PostgreSQL delivers a payload repeated in one transaction once).
  sendOnCommit: async (trx, events) => {
    await sql`SELECT count(pg_notify(${EVENTS_CHANNEL}, payload)) FROM unnest(${[...events]}::text[]) AS payload`.execute(trx);
  },
  writesInWith: true,
  // Casting text to json parses it: done once per row in a subquery (six fields of 1,000 hosts took 7 ms,
  // parsed once 2 ms).
  jsonDocument: (column) => sql`CAST(${sql.ref(column)} AS json)`,
  jsonInteger: (document, key) => sql`CAST(${sql.ref(document)} ->> ${sql.lit(key)} AS bigint)`,
};
