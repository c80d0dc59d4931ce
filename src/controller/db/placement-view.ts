// What a placement reads of every host (its capacity, images, engines, what is reserved on it), kept in memory
// between placements where only this process writes the database (SQLite). Reading 1,000 hosts' rows took
// 2-5 ms a placement here (one JS string per text cell), most of a create; the fleet's hosts change far less
// often than environments are placed. Correctness does not rest on this process seeing every change:
// - each write this store makes to a host marks that host, after the write, to be read again (`changed`);
// - a write by any other connection moves SQLite's `data_version`, and then every host is read again;
// - the re-reads happen inside the placement's transaction, under its lock, like the full read they replace.
// On PostgreSQL, where other controllers place too, every placement reads every host.
import { sql, type Transaction } from "kysely";
import type { HostKind } from "../host-report.ts";
import type { PlacementHost } from "./placement.ts";
import { PLACEMENT_COLUMNS, placementHostFromRow } from "./rows.ts";
import type { FleetDatabase } from "./schema.ts";

/** More hosts marked than this: one read of all is cheaper than a long `IN` list. */
const REREAD_ALL_OVER = 200;

export class PlacementView {
  private hosts: Map<string, PlacementHost & { kind: HostKind }> | undefined;
  private readonly marked = new Set<string>();
  private dataVersion: number | undefined;

  /** `cached`: only this process writes the database (SQLite's LocalCoordination). */
  constructor(private readonly cached: boolean) {}

  /** Every host as placement sees it, read in `trx` (which holds the placement lock). */
  async read(trx: Transaction<FleetDatabase>): Promise<PlacementHost[]> {
    if (!this.cached) return this.readAll(trx);
    const { rows } = await sql<{ data_version: number }>`PRAGMA data_version`.execute(trx);
    const version = rows[0]?.data_version;
    if (this.hosts === undefined || version !== this.dataVersion || this.marked.size > REREAD_ALL_OVER) {
      // Marks made from here on are for writes after this read: they stay for the next placement.
      this.marked.clear();
      const all = await this.readAll(trx);
      this.hosts = new Map(all.map((host) => [host.id, host]));
      this.dataVersion = version;
      return all;
    }
    if (this.marked.size > 0) {
      const ids = [...this.marked];
      this.marked.clear();
      const rows = await trx.selectFrom("hosts").select(PLACEMENT_COLUMNS).where("id", "in", ids).execute();
      for (const id of ids) this.hosts.delete(id);
      for (const row of rows) this.hosts.set(row.id, placementHostFromRow(row));
    }
    return [...this.hosts.values()];
  }

  /** The hosts were written (or removed) by this process: read them again before the next placement. */
  changed(ids: Iterable<string>): void {
    if (!this.cached) return;
    for (const id of ids) this.marked.add(id);
  }

  private async readAll(trx: Transaction<FleetDatabase>): Promise<(PlacementHost & { kind: HostKind })[]> {
    const rows = await trx.selectFrom("hosts").select(PLACEMENT_COLUMNS).orderBy("id").execute();
    return rows.map(placementHostFromRow);
  }
}
