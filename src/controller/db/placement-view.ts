// What a placement reads of every host (its capacity, images, engines, what is reserved on it), kept in memory
// between placements. Reading 1,000 hosts' rows took 2-5 ms a placement here (one JS string per text cell),
// most of a create; a fleet's hosts change far less often than environments are placed.
// - Where only this process writes the database (SQLite) the copy is exact: each write this store makes to a
//   host marks that host, after the write, to be read again (`changed`); a write by any other connection moves
//   SQLite's `data_version`, and then every host is read again.
// - Where other controllers write too (PostgreSQL) the copy may be behind theirs. A placement is chosen on it,
//   then checked against the chosen hosts' rows as they are now (read with the hosts this process wrote since,
//   in the statement that takes the placement lock: StoreDialect.lockPlacementReading): it stands only if it
//   fits them (so nothing is ever booked twice); otherwise it is chosen and checked once more on the copy so
//   updated, then, or when nothing fit, every host is read again and the placement made on that. The whole
//   copy is also read again every REFRESH_MS.
// Every read that a placement relies on happens inside the placement's transaction, under its lock.
import { sql, type Transaction } from "kysely";
import type { HostKind } from "../host-report.ts";
import type { Placement, PlacementHost } from "./placement.ts";
import { PLACEMENT_COLUMNS, placementHostFromRow, type PlacementRow } from "./rows.ts";
import type { FleetDatabase } from "./schema.ts";

/** More hosts marked than this: one read of all is cheaper than a long `IN` list. */
const REREAD_ALL_OVER = 200;
/** How old a shared database's copy may get before it is read whole again. */
const REFRESH_MS = 2000;

type ViewHost = PlacementHost & { kind: HostKind };

/** The placement lock of the transaction placing (StoreDialect.lockPlacement and lockPlacementReading). */
export interface PlacementLock {
  /** Takes it (again is harmless: it is held to the end of the transaction). */
  take(): Promise<void>;
  /** Takes it and reads these hosts' rows as they are under it, in one round trip; undefined where that cannot be done. */
  takeReading(hostIds: readonly string[]): Promise<PlacementRow[] | undefined>;
}

export class PlacementView {
  private hosts: Map<string, ViewHost> | undefined;
  private readonly marked = new Set<string>();
  private dataVersion: number | undefined;
  private readAt = 0;

  /** `shared`: other processes place on this database too (PostgreSQL). */
  constructor(private readonly shared: boolean) {}

  /**
   * `choose` (the placements of a batch of creates, placeInTurn) run on the hosts as they are, as far as this
   * transaction can tell once it holds the placement lock, which this takes (`lock`): on a shared database,
   * where it can, in the same round trip as the read of the chosen hosts. A guess on the copy stands only if
   * every create of the batch fits the chosen hosts' rows read under the lock.
   */
  async place(trx: Transaction<FleetDatabase>, choose: (hosts: PlacementHost[]) => Placement[], lock: PlacementLock): Promise<Placement[]> {
    if (!this.shared) {
      await lock.take();
      return choose(await this.readExact(trx));
    }
    const readAll = async (): Promise<Placement[]> => {
      await lock.take();
      return choose(await this.readAll(trx));
    };
    if (this.hosts === undefined || performance.now() - this.readAt > REFRESH_MS || this.marked.size > REREAD_ALL_OVER) return readAll();
    // Chosen on the copy as it is, then the chosen hosts and those this process marked read in one query, the
    // first time with the lock taken in it: the check is exact either way. A guess spoiled by a marked host's
    // old row is made again on the copy now brought up to date, and checked.
    for (let attempt = 0; attempt < 2; attempt++) {
      const guesses = choose([...this.hosts.values()]);
      if (!guesses.every((guess) => guess.ok)) break;
      const chosen = new Set(guesses.flatMap((guess) => (guess.ok ? guess.hostIds : [])));
      if (chosen.size === 0) {
        await lock.take();
        return guesses;
      }
      const ids = [...new Set([...this.marked, ...chosen])];
      // Marks made from here on are for writes after this read: they stay for the next placement.
      this.marked.clear();
      let rows = attempt === 0 ? await lock.takeReading(ids) : undefined;
      if (rows === undefined) {
        await lock.take();
        rows = await trx.selectFrom("hosts").select(PLACEMENT_COLUMNS).where("id", "in", ids).execute();
      }
      const current = this.replace(ids, rows);
      // Rows of the chosen hosts, so the lock was held when they were read.
      const checked = choose(current.filter((host) => chosen.has(host.id)));
      if (checked.every((placement) => placement.ok)) return checked;
    }
    return readAll();
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
    await this.readMarked(trx);
    return [...this.hosts.values()];
  }

  private async readMarked(trx: Transaction<FleetDatabase>): Promise<void> {
    if (this.marked.size === 0) return;
    // Marks made from here on are for writes after this read: they stay for the next placement.
    const ids = [...this.marked];
    this.marked.clear();
    this.replace(ids, await trx.selectFrom("hosts").select(PLACEMENT_COLUMNS).where("id", "in", ids).execute());
  }

  /** The copy's hosts `ids` replaced by the rows read of them (a host without a row is gone); those hosts. */
  private replace(ids: readonly string[], rows: readonly PlacementRow[]): ViewHost[] {
    const hosts = this.hosts ?? new Map<string, ViewHost>();
    this.hosts = hosts;
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
