// Opening the fleet store: the URL picks the database (SQLite in the state directory by default, or a shared
// PostgreSQL), the schema is migrated, and the events/leadership side is set up for that database.
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import Database from "better-sqlite3";
import { Kysely, PostgresDialect, SqliteDialect, sql, type LogConfig, type SqliteDatabase } from "kysely";
import pg from "pg";
import { CorralError, quote } from "../../protocol/errors.ts";
import { createLogger, type Logger } from "../../util/log.ts";
import { LocalCoordination, type FleetCoordination } from "./coordination.ts";
import { POSTGRES, SQLITE, type StoreDialect } from "./dialects.ts";
import { FleetStore, OPERATION_LEASE_MS } from "./fleet-store.ts";
import { migrateToLatest } from "./migrations.ts";
import { EVENTS_CHANNEL, PostgresCoordination } from "./pg-coordination.ts";
import type { FleetDatabase, FleetDb } from "./schema.ts";

export interface FleetStoreOptions {
  /** Nothing or `sqlite:PATH`: SQLite; `postgres://…` or `postgresql://…`: PostgreSQL. */
  url?: string;
  /** Where the default SQLite file goes (`STATE_DIR/controller.db`). */
  stateDir: string;
  now?: () => Date;
  /** How long a controller holds an environment's operation without renewing it (default OPERATION_LEASE_MS). */
  operationLeaseMs?: number;
  /** Background failures: lost connections, listeners that throw. */
  logger?: Logger;
  /** Called after each SQL statement the store runs (tests count queries; a debug log may show them). */
  onQuery?: (sql: string, durationMs: number) => void;
}

export type StoreTarget = { backend: "sqlite"; file: string } | { backend: "postgres"; url: string };

const SQLITE_FILE = "controller.db";
/**
 * PostgreSQL connections per controller. A placement holds one while it waits for the placement lock, so
 * with 10, 16 creates at once left the rest of the controller waiting for a connection (controller-scale
 * bench: 222-247 placements/s with 10, 282 with 20); 16 keeps five controllers under PostgreSQL's default
 * max_connections of 100.
 */
const POOL_SIZE = 16;

/** The URL with its password masked, fit for logs and messages. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*):[^@/]*@/i, "$1:***@");
}

export function parseStoreUrl(url: string | undefined, stateDir: string): StoreTarget {
  if (url === undefined || url === "") return { backend: "sqlite", file: join(stateDir, SQLITE_FILE) };
  if (url.startsWith("sqlite:") && url.length > "sqlite:".length) return { backend: "sqlite", file: resolve(url.slice("sqlite:".length)) };
  if (/^postgres(ql)?:\/\/./.test(url)) return { backend: "postgres", url };
  throw new CorralError(
    "invalid_request",
    `Cannot open the controller database ${quote(redactUrl(url))}: give sqlite:PATH, postgres://USER@HOST:PORT/DB (or postgresql://…), or nothing for ${join(stateDir, SQLITE_FILE)}`,
  );
}

interface Opened {
  db: FleetDb;
  dialect: StoreDialect;
  location: string;
  coordinate(logger: Logger): Promise<FleetCoordination>;
}

/** Statements kept prepared, by their SQL: the store's queries are a few dozen shapes, `IN` lists aside. */
const STATEMENT_CACHE_SIZE = 256;

/**
 * The database as kysely's SqliteDialect uses it, preparing each distinct SQL text once: kysely prepares a
 * statement for every query it runs, which was a sixth of the controller's CPU while placing environments
 * (bench/controller-scale.ts). The oldest statement is dropped beyond STATEMENT_CACHE_SIZE. Safe because the
 * dialect runs one query at a time on this one connection and never leaves a statement mid-iteration.
 */
function withStatementCache(database: Database.Database): SqliteDatabase {
  const prepared = new Map<string, Database.Statement>();
  return {
    prepare(sql: string) {
      let statement = prepared.get(sql);
      if (statement === undefined) {
        statement = database.prepare(sql);
        if (prepared.size >= STATEMENT_CACHE_SIZE) prepared.delete(prepared.keys().next().value as string);
        prepared.set(sql, statement);
      }
      return statement;
    },
    close() {
      prepared.clear();
      database.close();
    },
  };
}

function openSqlite(file: string, log: LogConfig | undefined): Opened {
  mkdirSync(dirname(file), { recursive: true });
  // The file holds the daemons' API tokens: only its owner may read it (SQLite gives new -wal and -shm files
  // the same mode; ones left by an older version are closed here too).
  closeSync(openSync(file, "a", 0o600));
  for (const path of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(path)) chmodSync(path, 0o600);
  const database = new Database(file);
  database.pragma("journal_mode = WAL");
  database.pragma("synchronous = NORMAL");
  database.pragma("busy_timeout = 5000");
  database.pragma("foreign_keys = ON");
  const db = new Kysely<FleetDatabase>({ dialect: new SqliteDialect({ database: withStatementCache(database) }), log });
  return { db, dialect: SQLITE, location: file, coordinate: async (logger) => new LocalCoordination(logger) };
}

function openPostgres(url: string, log: LogConfig | undefined, logger: Logger): Opened {
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE });
  // An idle pooled connection that breaks is dropped by the pool; without a listener it would crash the process.
  pool.on("error", (err) => logger.warn({ err }, "A pooled PostgreSQL connection of the controller broke"));
  const db = new Kysely<FleetDatabase>({ dialect: new PostgresDialect({ pool }), log });
  // One statement for all: NOTIFYs of one transaction reach listeners in the order sent (PostgreSQL drops a
  // repeat of the same payload within one transaction, so a batch says each change once).
  const publish = async (payloads: readonly string[]): Promise<void> => {
    await sql`SELECT pg_notify(${EVENTS_CHANNEL}, payload) FROM unnest(${sql.val(payloads)}::text[]) AS payload`.execute(db);
  };
  return { db, dialect: POSTGRES, location: redactUrl(url), coordinate: (logger) => PostgresCoordination.open(url, publish, logger) };
}

/** Opens (and migrates) the controller's database; close the store to release its connections. */
export async function openFleetStore(options: FleetStoreOptions): Promise<FleetStore> {
  const target = parseStoreUrl(options.url, options.stateDir);
  const logger = options.logger ?? createLogger();
  const onQuery = options.onQuery;
  const log: LogConfig | undefined = onQuery && ((event) => onQuery(event.query.sql, event.queryDurationMillis));
  const opened = target.backend === "sqlite" ? openSqlite(target.file, log) : openPostgres(target.url, log, logger);
  try {
    await migrateToLatest(opened.db);
    const coordination = await opened.coordinate(logger);
    return new FleetStore(opened.db, opened.dialect, coordination, {
      now: options.now ?? (() => new Date()),
      location: opened.location,
      operationLeaseMs: options.operationLeaseMs ?? OPERATION_LEASE_MS,
    });
  } catch (err) {
    await opened.db.destroy().catch(() => undefined);
    throw new Error(`Cannot open the controller database ${quote(opened.location)}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}
