// The controller's schema, as in-code kysely migrations: one list for SQLite and PostgreSQL, applied at open.
// kysely's Migrator records what ran in `kysely_migration` and, on PostgreSQL, holds an advisory lock while
// it migrates, so controllers starting together on one database do not race.
import { randomUUID } from "node:crypto";
import { Migrator, type Kysely, type Migration } from "kysely";
import type { FleetDb } from "./schema.ts";

// Migrations see the database as it was when they were written, not as schema.ts describes it today.
// biome-ignore lint/suspicious/noExplicitAny: a migration runs against whatever version of the schema the database holds, before its types apply
type AnyDb = Kysely<any>;

const MIGRATIONS: Record<string, Migration> = {
  "0001_hosts_envs_vms": {
    async up(db: AnyDb) {
      await db.schema
        .createTable("hosts")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("addr", "text", (c) => c.notNull())
        .addColumn("uri", "text", (c) => c.notNull().unique())
        .addColumn("token", "text")
        .addColumn("state", "text", (c) => c.notNull())
        .addColumn("hostname", "text", (c) => c.notNull())
        .addColumn("info", "text")
        .addColumn("vms", "text", (c) => c.notNull().defaultTo("[]"))
        .addColumn("reserved_cpu", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("reserved_mem", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("reserved_disk", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("failures", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("registered_at", "text", (c) => c.notNull())
        .addColumn("last_seen_at", "text")
        .addColumn("last_error", "text")
        .execute();

      await db.schema
        .createTable("envs")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("owner", "text", (c) => c.notNull())
        .addColumn("ssh_keys", "text", (c) => c.notNull())
        .addColumn("lifetime", "integer", (c) => c.notNull())
        .addColumn("state", "text", (c) => c.notNull())
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("expires_at", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("envs_by_expiry").on("envs").column("expires_at").execute();

      await db.schema
        .createTable("vms")
        .addColumn("id", "text", (c) => c.primaryKey())
        .addColumn("env_id", "text", (c) => c.notNull().references("envs.id"))
        .addColumn("position", "integer", (c) => c.notNull())
        .addColumn("host_id", "text", (c) => c.notNull())
        .addColumn("image", "text", (c) => c.notNull())
        .addColumn("engine", "text", (c) => c.notNull())
        .addColumn("cpu", "integer", (c) => c.notNull())
        .addColumn("mem", "integer", (c) => c.notNull())
        .addColumn("disk", "integer", (c) => c.notNull())
        .addColumn("ports", "text", (c) => c.notNull())
        .addColumn("deny_outgoing", "integer", (c) => c.notNull())
        .addColumn("port_map", "text", (c) => c.notNull())
        .addColumn("state", "text", (c) => c.notNull())
        .addColumn("ip", "text")
        .addColumn("error", "text")
        .addColumn("created_at", "text", (c) => c.notNull())
        .addColumn("updated_at", "text", (c) => c.notNull())
        .execute();
      await db.schema.createIndex("vms_by_env").on("vms").column("env_id").execute();
      await db.schema.createIndex("vms_by_host").on("vms").column("host_id").execute();
    },
  },
  // Who is carrying out an environment's create, stop, start or delete, until when (fleet-store.ts,
  // claimEnvOperation): what tells an operation in flight from one its controller's death interrupted.
  "0002_env_operations": {
    async up(db: AnyDb) {
      // SQLite adds one column per ALTER TABLE.
      await db.schema.alterTable("envs").addColumn("op_owner", "text").execute();
      await db.schema.alterTable("envs").addColumn("op_lease_until", "text").execute();
      await db.schema.createIndex("envs_by_state").on("envs").column("state").execute();
    },
  },
  // Hosts disconnected through Virtumancer's API (host-connections.ts): heartbeats leave them alone.
  "0003_host_disconnected": {
    async up(db: AnyDb) {
      await db.schema
        .alterTable("hosts")
        .addColumn("disconnected", "integer", (c) => c.notNull().defaultTo(0))
        .execute();
    },
  },
  // Hosts of other kinds (a TTstack agent beside Corral daemons), a VM's own SSH keys (TTstack's per-VM
  // `ssh_keys`), and the fleet's id: a host keeps it with each VM the controller makes, so that only VMs
  // provably this fleet's are ever deleted as orphans.
  "0004_host_kinds_fleet_id": {
    async up(db: AnyDb) {
      await db.schema
        .alterTable("hosts")
        .addColumn("kind", "text", (c) => c.notNull().defaultTo("corral"))
        .execute();
      await db.schema
        .alterTable("vms")
        .addColumn("ssh_keys", "text", (c) => c.notNull().defaultTo("[]"))
        .execute();
      await db.schema
        .createTable("settings")
        .addColumn("key", "text", (c) => c.primaryKey())
        .addColumn("value", "text", (c) => c.notNull())
        .execute();
      await db.insertInto("settings").values({ key: "fleet_id", value: randomUUID() }).execute();
    },
  },
  // What placement reads of a host's report as columns of their own (schema.ts), and the order environments
  // are listed and paged in (fleet-store.ts, listEnvsPage) as an index.
  "0005_host_capacity_env_order": {
    async up(db: AnyDb) {
      for (const [column, type] of [
        // Numbers as the host reports them (JSON numbers: a host may say 2.5), read back as numbers by both drivers.
        ["cpu_total", "double precision"],
        ["mem_total", "double precision"],
        ["disk_total", "double precision"],
        ["engines", "text"],
        ["images", "text"],
      ] as const)
        await db.schema.alterTable("hosts").addColumn(column, type).execute();
      const hosts: { id: string; info: string | null }[] = await db.selectFrom("hosts").select(["id", "info"]).where("info", "is not", null).execute();
      for (const host of hosts) {
        const info = JSON.parse(host.info as string) as { cpu_total: number; mem_total: number; disk_total: number; engines: string[]; images: string[] };
        await db
          .updateTable("hosts")
          .set({ cpu_total: info.cpu_total, mem_total: info.mem_total, disk_total: info.disk_total, engines: JSON.stringify(info.engines), images: JSON.stringify(info.images) })
          .where("id", "=", host.id)
          .execute();
      }
      // Every column a placement reads, so that SQLite answers it from this index alone: in the table they sit
      // after each host's VM list and report, whose overflow pages a row scan walks (1,000 hosts: 5 ms a placement).
      await db.schema
        .createIndex("hosts_for_placement")
        .on("hosts")
        .columns(["id", "kind", "state", "cpu_total", "mem_total", "disk_total", "engines", "images", "reserved_cpu", "reserved_mem", "reserved_disk"])
        .execute();
      await db.schema.createIndex("envs_by_creation").on("envs").columns(["created_at", "id"]).execute();
    },
  },
};

/** Brings the schema up to date; throws with the failed migration's name and cause. */
export async function migrateToLatest(db: FleetDb): Promise<void> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => MIGRATIONS } });
  const { error, results } = await migrator.migrateToLatest();
  if (error === undefined) return;
  const failed = results?.find((r) => r.status === "Error")?.migrationName;
  throw new Error(`Cannot migrate the controller database${failed ? ` (migration "${failed}")` : ""}`, { cause: error });
}
