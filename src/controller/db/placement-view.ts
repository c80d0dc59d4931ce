// What a placement reads of every host (its capacity, images, engines, what is reserved on it), kept in memory
// between placements. Reading 1,000 hosts' rows took 2-5 ms a placement here (one JS string per text cell),
// most of a create; a fleet's hosts change far less often than environments are placed.
// - Where only this process writes the database (SQLite) the copy is exact: each write this store makes to a
//   host marks that host, after the write, to be read again (`changed`); a write by any other connection moves
//   SQLite's `data_version`, and then every host is read again.
// - Where other controllers write too (PostgreSQL) the copy may be behind theirs. A placement is chosen on it,
//   then checked against the chosen hosts' rows as they are now (read with the hosts this process wrote since,
//   in one query), under the placement lock: it stands only if it fits them (so nothing is ever booked twice);
//   otherwise it is chosen and checked once more on the copy so updated, then, or when nothing fit, every host
//   is read again and the placement made on that. The whole copy is also read again every REFRESH_MS.
// Every read happens inside the placement's transaction, under its lock.
import { sql, type Transaction } from "kysely";
import type { HostKind } from "../host-report.ts";
import type { Placement, PlacementHost } from "./placement.ts";
import { PLACEMENT_COLUMNS, placementHostFromRow } from "./rows.ts";
import type { FleetDatabase } from "./schema.ts";

/** More hosts marked than this: one read of all is cheaper than a long `IN` list. */
const REREAD_ALL_OVER = 200;
/** How old a shared database's copy may get before it is read whole again. */
const REFRESH_MS = 2000;

type ViewHost = PlacementHost & { kind: HostKind };

export class PlacementView {
  private hosts: Map<string, ViewHost> | undefined;
  private readonly marked = new Set<string>();
  private dataVersion: number | undefined;
  private readAt = 0;

  /** `shared`: other processes place on this database too (PostgreSQL). */
  constructor(private readonly shared: boolean) {}

  /** `choose` run on the hosts as they are, as far as this transaction (holding the placement lock) can tell. */
  async place(trx: Transaction<FleetDatabase>, choose: (hosts: PlacementHost[]) => Placement): Promise<Placement> {
    if (!this.shared) return choose(await this.readExact(trx));
    if (this.hosts === undefined || performance.now() - this.readAt > REFRESH_MS || this.marked.size > REREAD_ALL_OVER) return choose(await this.readAll(trx));
    // Chosen on the copy as it is, then the chosen hosts and those this process marked read in one query (a
    // round trip fewer under the lock than reading the marked ones first): the check is exact either way. A
    // guess spoiled by a marked host's old row is made again on the copy now brought up to date, and checked.
    for (let attempt = 0; attempt < 2; attempt++) {
      const guess = choose([...this.hosts.values()]);
      if (!guess.ok) break;
      if (guess.hostIds.length === 0) return guess;
      const chosen = new Set(guess.hostIds);
      const current = await this.readMarked(trx, this.hosts, chosen);
      const checked = choose(current.filter((host) => chosen.has(host.id)));
      if (checked.ok) return checked;
    }
    return choose(await this.readAll(trx));
  }

  /** The hosts were written (or removed) by this process: read them again before the next placement. */
  changed(ids: Iterable<string>): void {
    for (const id of ids) this.marked.add(id);
  }

  /** Only this process writes: the copy, brought up to date with what it marked, or read whole when another connection wrote. */
  private async readExact(trx: Transaction<FleetDatabase>): Promise<PlacementHost[]> {
    const { rows } = await sql<{ data_version: number }>`PRAGMA data_version`.execute(trx);
    const version = rows[0]?.data_version;
    if (this.hosts === undefined || version !== this.dataVersion || this.marked.size > REREAD_ALL_OVER) {
      const all = await this.readAll(trx);
      this.dataVersion = version;
      return all;
    }
    await this.readMarked(trx, this.hosts);
    return [...this.hosts.values()];
  }

  /** Reads the marked hosts (and `also`) into the copy; the rows read. */
  private async readMarked(trx: Transaction<FleetDatabase>, hosts: Map<string, ViewHost>, also: ReadonlySet<string> = new Set()): Promise<ViewHost[]> {
    if (this.marked.size === 0 && also.size === 0) return [];
    // Marks made from here on are for writes after this read: they stay for the next placement.
    const ids = [...new Set([...this.marked, ...also])];
    this.marked.clear();
    const rows = await trx.selectFrom("hosts").select(PLACEMENT_COLUMNS).where("id", "in", ids).execute();
    for (const id of ids) hosts.delete(id);
    const read = rows.map(placementHostFromRow);
    for (const host of read) hosts.set(host.id, host);
    return read;
  }

  private async readAll(trx: Transaction<FleetDatabase>): Promise<ViewHost[]> {
    this.marked.clear();
    const rows = await trx.selectFrom("hosts").select(PLACEMENT_COLUMNS).orderBy("id").execute();
    const all = rows.map(placementHostFromRow);
    this.hosts = new Map(all.map((host) => [host.id, host]));
    this.readAt = performance.now();
    return all;
  }
}
