// The few things the fleet store says differently to SQLite and to PostgreSQL; every other query is kysely's
// and the same for both.
import { sql, type RawBuilder, type Transaction } from "kysely";
import type { FleetDatabase } from "./schema.ts";

export type BackendName = "sqlite" | "postgres";

export interface StoreDialect {
  readonly name: BackendName;
  /**
   * Taken first in a transaction that places VMs or removes a host, held until it ends: such transactions
   * run one at a time across every process on the database, so two placements never book the same room.
   */
  lockPlacement(trx: Transaction<FleetDatabase>): Promise<void>;
  /** An integer field of a JSON text column of hosts (null where the column is null). */
  jsonInteger(column: "hosts.info", key: string): RawBuilder<number | string | null>;
}

/** pg_advisory_xact_lock key of placements (pg-coordination.ts holds another for leadership). */
export const PLACEMENT_LOCK_KEY = 726_133_001;

export const SQLITE: StoreDialect = {
  name: "sqlite",
  // kysely's SqliteDialect runs every query of the process on one connection, a transaction holding it to
  // the end: transactions are already one at a time.
  lockPlacement: async () => undefined,
  jsonInteger: (column, key) => sql`json_extract(${sql.ref(column)}, ${sql.lit(`$.${key}`)})`,
};

export const POSTGRES: StoreDialect = {
  name: "postgres",
  lockPlacement: async (trx) => {
    await sql`SELECT pg_advisory_xact_lock(${sql.lit(PLACEMENT_LOCK_KEY)})`.execute(trx);
  },
  jsonInteger: (column, key) => sql`CAST(CAST(${sql.ref(column)} AS json) ->> ${sql.lit(key)} AS bigint)`,
};
