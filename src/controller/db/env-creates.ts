// Storing new environments, placed: each create's environment row, its VMs (`pending`) on the hosts chosen
// for them, and those hosts' reserved room, all or nothing per create. Creates are placed in batches (group
// commit, group-commit.ts): those that arrive while a batch is placing wait, then are placed together in one
// transaction, each on the room the ones before it left (placeInTurn), each with its own outcome. On
// PostgreSQL every placement of every controller waits for the placement lock, held for a few round trips:
// a batch holds it once for all its creates, and a waiting create holds no pooled connection meanwhile.
import type { Selectable, Transaction } from "kysely";
import { CorralError, quote } from "../../protocol/errors.ts";
import type { FleetCoordination } from "./coordination.ts";
import type { StoreDialect } from "./dialects.ts";
import { GroupCommit, type Settled } from "./group-commit.ts";
import { placeInTurn, type PlaceFn } from "./placement.ts";
import type { PlacementView } from "./placement-view.ts";
import type { Amounts, EnvRecord, NewFleetVm } from "./records.ts";
import { envFromRow, vmFromRow, vmToRow } from "./rows.ts";
import type { EnvsTable, FleetDatabase, FleetDb, FleetQueries, VmsTable } from "./schema.ts";

/** One create waiting to be placed. */
export interface PendingCreate {
  envRow: Selectable<EnvsTable>;
  vms: readonly NewFleetVm[];
  place: PlaceFn;
  /** Events sent once it is stored, never for a create that fails. */
  announce: readonly object[];
  /** `announce` as JSON. */
  payloads: readonly string[];
}

/**
 * A batch's bounds: enough creates to share a lock turn, few enough VMs that a batch's insert stays well
 * under PostgreSQL's 65,535 parameters (19 a VM).
 */
const BATCH_LIMITS = { items: 64, weight: 512 };

export function isUniqueViolation(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  // better-sqlite3's extended result codes; PostgreSQL's SQLSTATE unique_violation.
  return code === "SQLITE_CONSTRAINT_PRIMARYKEY" || code === "SQLITE_CONSTRAINT_UNIQUE" || code === "23505";
}

export class EnvCreates {
  private readonly batches = new GroupCommit<PendingCreate, EnvRecord>((batch) => this.storeBatch(batch), BATCH_LIMITS);

  constructor(
    private readonly db: FleetDb,
    private readonly dialect: StoreDialect,
    private readonly coordination: FleetCoordination,
    private readonly placementView: PlacementView,
    private readonly addReserved: (trx: FleetQueries, hostId: string, amounts: Amounts, op: "+" | "-") => Promise<void>,
  ) {}

  /** Places and stores the create with those waiting with it; its environment, or its own error. */
  create(pending: PendingCreate): Promise<EnvRecord> {
    return this.batches.submit(pending, Math.max(1, pending.vms.length));
  }

  /**
   * The batch in one transaction; if that fails as a whole (a VM id taken, a lost connection), each create
   * again in a transaction of its own, so that only the one at fault fails.
   */
  private async storeBatch(batch: readonly PendingCreate[]): Promise<Settled<EnvRecord>[]> {
    try {
      return await this.storeTogether(batch);
    } catch (err) {
      if (batch.length > 1) {
        const outcomes: Settled<EnvRecord>[] = [];
        for (const pending of batch) outcomes.push(...(await this.storeBatch([pending])));
        return outcomes;
      }
      const [pending] = batch as [PendingCreate];
      return [{ ok: false, error: isUniqueViolation(err) ? await this.idConflict(pending, err) : err }];
    }
  }

  private async storeTogether(batch: readonly PendingCreate[]): Promise<Settled<EnvRecord>[]> {
    const outcomes: (Settled<EnvRecord> | undefined)[] = batch.map(() => undefined);
    const chosen = new Set<string>();
    try {
      await this.db.transaction().execute(async (trx) => {
        // The environments' rows before the placement lock: what the lock is held for is short (placements
        // across controllers wait for it on PostgreSQL). A taken id is skipped, and refused for its create alone.
        const inserted = await trx
          .insertInto("envs")
          .values(batch.map((pending) => pending.envRow))
          .onConflict((oc) => oc.column("id").doNothing())
          .returning("id")
          .execute();
        const fresh = new Set(inserted.map((row) => row.id));
        // Each inserted id is one create's (the first to ask for it in the batch).
        const placing = batch.flatMap((pending, i) => (fresh.delete(pending.envRow.id) ? [i] : []));
        if (placing.length === 0) return;
        const placements = await this.placementView.place(
          trx,
          (hosts) =>
            placeInTurn(
              hosts,
              placing.map((i) => ({ specs: (batch[i] as PendingCreate).vms, place: (batch[i] as PendingCreate).place })),
            ),
          { take: () => this.dialect.lockPlacement(trx), takeReading: (ids) => this.dialect.lockPlacementReading(trx, ids) },
        );
        const vmRows: Selectable<VmsTable>[] = [];
        const refused: string[] = [];
        for (const [k, i] of placing.entries()) {
          const { envRow, vms } = batch[i] as PendingCreate;
          const placement = placements[k];
          if (placement === undefined || !placement.ok || placement.hostIds.length !== vms.length) {
            const error = placement?.ok === false ? new CorralError("no_capacity", placement.reason) : new Error(`Placement chose no host for some VM of ${quote(envRow.id)}`);
            outcomes[i] = { ok: false, error };
            refused.push(envRow.id);
            continue;
          }
          const rows = vms.map((vm, position) => vmToRow(vm, { envId: envRow.id, position, hostId: placement.hostIds[position] as string }, envRow.created_at));
          vmRows.push(...rows);
          for (const hostId of placement.hostIds) chosen.add(hostId);
          outcomes[i] = { ok: true, value: envFromRow(envRow, rows.map(vmFromRow)) };
        }
        if (refused.length > 0) await trx.deleteFrom("envs").where("id", "in", refused).execute();
        await this.insertVmsAndReserve(trx, vmRows);
        const payloads = batch.flatMap((pending, i) => (outcomes[i]?.ok ? pending.payloads : []));
        if (this.dialect.eventsInTransaction && payloads.length > 0) await this.dialect.sendOnCommit(trx, payloads);
      });
    } finally {
      // Their reserved room changed (or, rolled back, did not): read again either way.
      this.placementView.changed(chosen);
    }
    if (!this.dialect.eventsInTransaction) {
      const announce = batch.flatMap((pending, i) => (outcomes[i]?.ok ? pending.announce : []));
      if (announce.length > 0) await this.coordination.publish(...announce);
    }
    // The creates left without an outcome are those whose id was taken.
    return Promise.all(batch.map(async (pending, i) => outcomes[i] ?? { ok: false as const, error: await this.idConflict(pending, undefined) }));
  }

  /** Which id of a create was taken (its unique key refused it): the environment's, or one of its VMs'. */
  private async idConflict(pending: PendingCreate, cause: unknown): Promise<CorralError> {
    const envId = pending.envRow.id;
    const vmIds = pending.vms.map((vm) => vm.id);
    const env = await this.db.selectFrom("envs").select("id").where("id", "=", envId).executeTakeFirst();
    if (env) return new CorralError("conflict", `Environment ${quote(envId)} already exists`, { cause });
    const vm = vmIds.length === 0 ? undefined : await this.db.selectFrom("vms").select("id").where("id", "in", vmIds).executeTakeFirst();
    if (vm) return new CorralError("conflict", `Cannot create environment ${quote(envId)}: VM id ${quote(vm.id)} is taken`, { cause });
    return new CorralError("conflict", `Cannot create environment ${quote(envId)}: its id or a VM's was taken while it was being created`, { cause });
  }

  /** Stores the placed VMs and books their room on their hosts; where the dialect can, the VMs' insert rides with the first host's update. */
  private async insertVmsAndReserve(trx: Transaction<FleetDatabase>, vmRows: readonly Selectable<VmsTable>[]): Promise<void> {
    if (vmRows.length === 0) return;
    const [first, ...others] = reservedByHost(vmRows);
    if (first === undefined) return;
    if (this.dialect.writesInWith) {
      // Under the placement lock, one statement fewer is one round trip fewer that every placement waits for.
      const [hostId, amounts] = first;
      await trx
        .with("placed", (qc) => qc.insertInto("vms").values([...vmRows]))
        .updateTable("hosts")
        .set((eb) => ({
          reserved_cpu: eb("reserved_cpu", "+", amounts.cpu),
          reserved_mem: eb("reserved_mem", "+", amounts.mem),
          reserved_disk: eb("reserved_disk", "+", amounts.disk),
        }))
        .where("id", "=", hostId)
        .execute();
    } else {
      await trx
        .insertInto("vms")
        .values([...vmRows])
        .execute();
      await this.addReserved(trx, ...first, "+");
    }
    for (const [hostId, amounts] of others) await this.addReserved(trx, hostId, amounts, "+");
  }
}

function reservedByHost(rows: readonly Selectable<VmsTable>[]): Map<string, Amounts> {
  const sums = new Map<string, Amounts>();
  for (const row of rows) {
    const sum = sums.get(row.host_id) ?? { cpu: 0, mem: 0, disk: 0 };
    sums.set(row.host_id, { cpu: sum.cpu + row.cpu, mem: sum.mem + row.mem, disk: sum.disk + row.disk });
  }
  return sums;
}
