// GET /api/status's numbers, counted by the database: a few aggregate queries whatever the fleet's size.
import type { StoreDialect } from "./dialects.ts";
import type { FleetQueries } from "./schema.ts";

interface Capacity {
  /** Over online hosts. */
  total: number;
  /** By the controller's VMs. */
  reserved: number;
  /** By running VMs, as the hosts report. */
  used: number;
}

/** The fleet's totals (cpu in vCPUs, mem and disk in MiB); GET /api/status shows them in TTstack's FleetStatus. */
export interface FleetTotals {
  hosts: { total: number; online: number; offline: number };
  envs: number;
  vms: { total: number; running: number; stopped: number; other: number };
  cpu: Capacity;
  mem: Capacity;
  disk: Capacity;
}

/** COUNT and SUM come back as strings from PostgreSQL (bigint, numeric) and as numbers from SQLite. */
function count(value: number | string | bigint | null | undefined): number {
  return value === null || value === undefined ? 0 : Number(value);
}

/**
 * Totals and used are what online hosts last reported; reserved is what the controller's VMs reserve on
 * every host, offline ones included (those VMs still hold their room).
 */
export async function queryFleetStatus(db: FleetQueries, dialect: StoreDialect): Promise<FleetTotals> {
  const parsed = db
    .selectFrom("hosts")
    .select(["state", "reserved_cpu", "reserved_mem", "reserved_disk", dialect.jsonDocument("hosts.info").as("info")])
    .as("h");
  const hosts = await db
    .selectFrom(parsed)
    .select((eb) => {
      const reported = (key: string) => eb.fn.sum(dialect.jsonInteger("h.info", key)).filterWhere("state", "=", "online");
      return [
        eb.fn.countAll().as("total"),
        eb.fn.countAll().filterWhere("state", "=", "online").as("online"),
        reported("cpu_total").as("cpu_total"),
        reported("mem_total").as("mem_total"),
        reported("disk_total").as("disk_total"),
        reported("cpu_used").as("cpu_used"),
        reported("mem_used").as("mem_used"),
        reported("disk_used").as("disk_used"),
        eb.fn.sum("reserved_cpu").as("reserved_cpu"),
        eb.fn.sum("reserved_mem").as("reserved_mem"),
        eb.fn.sum("reserved_disk").as("reserved_disk"),
      ];
    })
    .executeTakeFirstOrThrow();
  const envs = await db
    .selectFrom("envs")
    .select((eb) => eb.fn.countAll().as("total"))
    .executeTakeFirstOrThrow();
  const vms = await db
    .selectFrom("vms")
    .select((eb) => [
      eb.fn.countAll().as("total"),
      eb.fn.countAll().filterWhere("state", "=", "running").as("running"),
      eb.fn.countAll().filterWhere("state", "=", "stopped").as("stopped"),
    ])
    .executeTakeFirstOrThrow();

  const total = count(hosts.total);
  const online = count(hosts.online);
  const vmTotal = count(vms.total);
  const running = count(vms.running);
  const stopped = count(vms.stopped);
  return {
    hosts: { total, online, offline: total - online },
    envs: count(envs.total),
    vms: { total: vmTotal, running, stopped, other: vmTotal - running - stopped },
    cpu: { total: count(hosts.cpu_total), reserved: count(hosts.reserved_cpu), used: count(hosts.cpu_used) },
    mem: { total: count(hosts.mem_total), reserved: count(hosts.reserved_mem), used: count(hosts.mem_used) },
    disk: { total: count(hosts.disk_total), reserved: count(hosts.reserved_disk), used: count(hosts.disk_used) },
  };
}

/** How many hosts, environments and VMs are in each state (the controller's /metrics gauges). */
export interface StateCounts {
  /** One row per kind and state present; a disconnected host counts as `disconnected`, whatever it was. */
  hosts: { kind: string; state: string; count: number }[];
  envs: { state: string; count: number }[];
  vms: { state: string; count: number }[];
}

/** Three GROUP BY queries, whatever the fleet's size. */
export async function queryStateCounts(db: FleetQueries): Promise<StateCounts> {
  const [hosts, envs, vms] = await Promise.all([
    db
      .selectFrom("hosts")
      .select((eb) => ["kind", "state", "disconnected", eb.fn.countAll().as("n")])
      .groupBy(["kind", "state", "disconnected"])
      .execute(),
    db
      .selectFrom("envs")
      .select((eb) => ["state", eb.fn.countAll().as("n")])
      .groupBy("state")
      .execute(),
    db
      .selectFrom("vms")
      .select((eb) => ["state", eb.fn.countAll().as("n")])
      .groupBy("state")
      .execute(),
  ]);
  const byHostState = new Map<string, { kind: string; state: string; count: number }>();
  for (const row of hosts) {
    const state = row.disconnected ? "disconnected" : row.state;
    const key = `${row.kind}/${state}`;
    const entry = byHostState.get(key) ?? { kind: row.kind, state, count: 0 };
    entry.count += count(row.n);
    byHostState.set(key, entry);
  }
  return {
    hosts: [...byHostState.values()],
    envs: envs.map((row) => ({ state: row.state, count: count(row.n) })),
    vms: vms.map((row) => ({ state: row.state, count: count(row.n) })),
  };
}
