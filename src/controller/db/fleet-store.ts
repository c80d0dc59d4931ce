// The fleet controller's state: hosts, environments and their VMs, over SQLite or PostgreSQL through one
// kysely query layer. Placement and the counters it books change in one transaction, serialized across
// processes (dialects.ts), so controllers sharing a database never book the same room twice.
import type { Expression, ExpressionBuilder, Selectable, SqlBool } from "kysely";
import type { HostState } from "../../protocol/controller.ts";
import { assertEnvMove, envStatesLeadingTo, type EnvState } from "../../protocol/env-lifecycle.ts";
import { CorralError, quote } from "../../protocol/errors.ts";
import { isHostKind } from "../host-report.ts";
import { encodeEvent, type FleetCoordination, type EventListener } from "./coordination.ts";
import type { BackendName, StoreDialect } from "./dialects.ts";
import { queryFleetStatus, queryStateCounts, type FleetTotals, type StateCounts } from "./fleet-status.ts";
import { EnvCreates, isUniqueViolation } from "./env-creates.ts";
import type { PlaceFn } from "./placement.ts";
import type { Amounts, EnvRecord, FleetVmRecord, HostEndpoint, HostPatch, HostRecord, NewEnv, NewFleetVm, NewHost, VmPatch } from "./records.ts";
import { PlacementView } from "./placement-view.ts";
import { envFromRow, envToRow, hostFromRow, hostPatchToRow, hostToRow, vmFromRow, vmPatchToRow } from "./rows.ts";
import type { FleetDatabase, FleetDb, FleetQueries, VmsTable } from "./schema.ts";

/**
 * How long a controller holds an environment's operation (create, stop, start, delete) without renewing it.
 * A controller renews the operations it carries out every few seconds (EnvService.renewLeases); past this,
 * the operation is taken for abandoned (its controller died or lost the database) and another may finish it.
 * Controllers compare it with their own clocks: theirs must agree to well within it (NTP does).
 */
export const OPERATION_LEASE_MS = 15_000;

/** Which environments `loadEnvs` reads (column names qualified: the condition also runs in a subquery of vms). */
type EnvCondition = (eb: ExpressionBuilder<FleetDatabase, "envs">) => Expression<SqlBool>;

/** Environments whose state the lifecycle lets move to `to` (none for a state no move leads to: `creating`). */
function mayMoveTo(to: EnvState): EnvCondition {
  const sources = envStatesLeadingTo(to);
  return (eb) => (sources.length === 0 ? eb.lit(false) : eb("envs.state", "in", sources));
}

const hostNotFound = (id: string) => new CorralError("host_not_found", `Host ${quote(id)} is not registered`);
const envNotFound = (id: string) => new CorralError("env_not_found", `Environment ${quote(id)} does not exist`);
const vmNotFound = (id: string) => new CorralError("vm_not_found", `VM ${quote(id)} does not exist`);

async function required<T>(lookup: Promise<T | undefined>, notFound: () => CorralError): Promise<T> {
  const value = await lookup;
  if (value === undefined) throw notFound();
  return value;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

export interface FleetStoreSettings {
  now: () => Date;
  /** Where the state is, for logs: the SQLite file, or the PostgreSQL URL without its password. */
  location: string;
  operationLeaseMs: number;
}

export class FleetStore {
  private closing: Promise<void> | undefined;
  private readonly now: () => Date;
  readonly location: string;
  private readonly leaseMs: number;
  private readonly placementView: PlacementView;
  private readonly creates: EnvCreates;

  constructor(
    private readonly db: FleetDb,
    private readonly dialect: StoreDialect,
    private readonly coordination: FleetCoordination,
    settings: FleetStoreSettings,
  ) {
    this.now = settings.now;
    this.location = settings.location;
    this.leaseMs = settings.operationLeaseMs;
    this.placementView = new PlacementView(coordination.shared);
    this.creates = new EnvCreates(db, dialect, coordination, this.placementView, (trx, hostId, amounts, op) => this.addReserved(trx, hostId, amounts, op));
  }

  get backend(): BackendName {
    return this.dialect.name;
  }

  // ---- the fleet ----

  private fleetIdRead: Promise<string> | undefined;

  /** This fleet's id (made once, by the migration that added it): what hosts keep with the VMs the controller makes. */
  fleetId(): Promise<string> {
    this.fleetIdRead ??= this.db
      .selectFrom("settings")
      .select("value")
      .where("key", "=", "fleet_id")
      .executeTakeFirstOrThrow()
      .then((row) => row.value);
    return this.fleetIdRead;
  }

  // ---- hosts ----

  async insertHost(host: NewHost): Promise<HostRecord> {
    const row = hostToRow(host, this.now().toISOString());
    try {
      await this.db.insertInto("hosts").values(row).execute();
    } catch (err) {
      if (isUniqueViolation(err)) throw await this.hostConflict(host, err);
      throw err;
    } finally {
      this.placementView.changed([host.id]);
    }
    return hostFromRow(row);
  }

  /** Which registered host the new one collides with: the same id, or another id at the same URI. */
  private async hostConflict(host: Pick<HostRecord, "id" | "uri">, cause: unknown): Promise<CorralError> {
    const other = await this.db.selectFrom("hosts").select("id").where("uri", "=", host.uri).where("id", "!=", host.id).executeTakeFirst();
    const message = other ? `Host ${quote(other.id)} is already registered at ${quote(host.uri)}` : `Host ${quote(host.id)} is already registered`;
    return new CorralError("conflict", message, { cause });
  }

  async findHost(id: string): Promise<HostRecord | undefined> {
    const row = await this.db.selectFrom("hosts").selectAll().where("id", "=", id).executeTakeFirst();
    return row && hostFromRow(row);
  }

  getHost(id: string): Promise<HostRecord> {
    return required(this.findHost(id), () => hostNotFound(id));
  }

  async listHosts(): Promise<HostRecord[]> {
    const rows = await this.db.selectFrom("hosts").selectAll().orderBy("id").execute();
    return rows.map(hostFromRow);
  }

  /** The ids of the hosts heartbeats ask (all but those disconnected), without their reports (see Heartbeats.beatAll). */
  async listConnectedHostIds(): Promise<string[]> {
    const rows = await this.db.selectFrom("hosts").select("id").where("disconnected", "=", 0).orderBy("id").execute();
    return rows.map((row) => row.id);
  }

  /**
   * The addresses of the given hosts (of all, without ids), by id: cheap where `listHosts` is not, since it
   * leaves out each host's info and VM list (JSON that a big fleet would parse on every environment call).
   */
  async hostEndpoints(ids?: Iterable<string>): Promise<Map<string, HostEndpoint>> {
    let query = this.db.selectFrom("hosts").select(["id", "addr", "uri", "token", "kind", "state"]);
    if (ids !== undefined) {
      const wanted = [...new Set(ids)];
      if (wanted.length === 0) return new Map();
      query = query.where("id", "in", wanted);
    }
    const rows = await query.execute();
    return new Map(rows.map((row) => [row.id, { ...row, kind: isHostKind(row.kind) ? row.kind : "corral", state: row.state as HostState }]));
  }

  async updateHost(id: string, patch: HostPatch): Promise<HostRecord> {
    const values = hostPatchToRow(patch);
    if (Object.values(values).every((v) => v === undefined)) return this.getHost(id);
    let row: Selectable<FleetDatabase["hosts"]> | undefined;
    try {
      row = await this.db.updateTable("hosts").set(values).where("id", "=", id).returningAll().executeTakeFirst();
    } catch (err) {
      if (isUniqueViolation(err) && patch.uri !== undefined) throw await this.hostConflict({ id, uri: patch.uri }, err);
      throw err;
    } finally {
      this.placementView.changed([id]);
    }
    if (!row) throw hostNotFound(id);
    return hostFromRow(row);
  }

  /**
   * A heartbeat's write: the patch, unless the host is disconnected (an answer must not bring back a host
   * disconnected while it was asked) or gone; whether it was written. Nothing is read back: parsing the row's
   * report and VM list again cost a beat about as much as the write.
   */
  async updateConnectedHost(id: string, patch: HostPatch): Promise<boolean> {
    try {
      const result = await this.db.updateTable("hosts").set(hostPatchToRow(patch)).where("id", "=", id).where("disconnected", "=", 0).executeTakeFirst();
      return result.numUpdatedRows > 0n;
    } finally {
      this.placementView.changed([id]);
    }
  }

  /** Refuses with 409 `conflict` while the controller has VMs on the host; 404 `host_not_found` if there is no such host. */
  async deleteHost(id: string): Promise<void> {
    try {
      await this.db.transaction().execute(async (trx) => {
        // Under the placement lock: no environment can place a VM on the host between the count and the delete.
        await this.dialect.lockPlacement(trx);
        const n = await countVms(trx, "host_id", id);
        if (n > 0) throw new CorralError("conflict", `Cannot remove host ${quote(id)}: it still holds ${plural(n, "VM")} of the controller's environments; delete those first`);
        const result = await trx.deleteFrom("hosts").where("id", "=", id).executeTakeFirst();
        if (result.numDeletedRows === 0n) throw hostNotFound(id);
      });
    } finally {
      this.placementView.changed([id]);
    }
  }

  // ---- environments ----

  /**
   * Places the environment's VMs and stores it, all or nothing: the env, its VMs (`pending`) and the chosen
   * hosts' reserved counters. Throws 409 `conflict` if the id (or a VM id) is taken, 422 `no_capacity` with
   * the placement's reason if some VM fits nowhere. `announce`: events sent once it is stored, never for a
   * create that fails (on PostgreSQL with the transaction's commit, in the statement that takes the lock).
   */
  async createEnv(env: NewEnv, vms: readonly NewFleetVm[], place: PlaceFn, announce: readonly object[] = []): Promise<EnvRecord> {
    const ids = vms.map((v) => v.id);
    const repeated = ids.find((id, i) => ids.indexOf(id) !== i);
    if (repeated !== undefined) throw new CorralError("invalid_request", `Cannot create environment ${quote(env.id)}: VM id ${quote(repeated)} is given twice`);
    const envRow = envToRow(env, this.now(), this.leaseMs);
    // With the creates that wait for the placement with it (env-creates.ts).
    return this.creates.create({ envRow, vms, place, announce, payloads: announce.map(encodeEvent) });
  }

  private async addReserved(trx: FleetQueries, hostId: string, amounts: Amounts, op: "+" | "-"): Promise<void> {
    await trx
      .updateTable("hosts")
      .set((eb) => ({
        reserved_cpu: eb("reserved_cpu", op, amounts.cpu),
        reserved_mem: eb("reserved_mem", op, amounts.mem),
        reserved_disk: eb("reserved_disk", op, amounts.disk),
      }))
      .where("id", "=", hostId)
      .execute();
  }

  async findEnv(id: string): Promise<EnvRecord | undefined> {
    return (await this.loadEnvs((eb) => eb("envs.id", "=", id)))[0];
  }

  getEnv(id: string): Promise<EnvRecord> {
    return required(this.findEnv(id), () => envNotFound(id));
  }

  /** Every environment with its VMs, oldest first: two queries whatever the count. */
  listEnvs(): Promise<EnvRecord[]> {
    return this.loadEnvs();
  }

  /**
   * Up to `limit` environments with their VMs, in listEnvs' order, from just after `after` (the position of
   * the last one of the page before, as `nextAfter` gave it); `next` is where the following page starts, or
   * undefined after the last. Two indexed queries whatever the fleet's size (envs_by_creation).
   */
  async listEnvsPage(limit: number, after?: EnvPosition): Promise<{ envs: EnvRecord[]; next: EnvPosition | undefined }> {
    let query = this.db.selectFrom("envs").selectAll();
    if (after !== undefined) query = query.where((eb) => eb(eb.refTuple("created_at", "id"), ">", eb.tuple(after.createdAt, after.id)));
    // One more than asked: whether a page follows, without counting.
    const envRows = await query
      .orderBy("created_at")
      .orderBy("id")
      .limit(limit + 1)
      .execute();
    const more = envRows.length > limit;
    const pageRows = more ? envRows.slice(0, limit) : envRows;
    if (pageRows.length === 0) return { envs: [], next: undefined };
    const vmRows = await this.db
      .selectFrom("vms")
      .selectAll()
      .where(
        "env_id",
        "in",
        pageRows.map((row) => row.id),
      )
      .orderBy("env_id")
      .orderBy("position")
      .execute();
    const envs = envsWithVms(pageRows, vmRows);
    const last = pageRows[pageRows.length - 1] as Selectable<FleetDatabase["envs"]>;
    return { envs, next: more ? { createdAt: last.created_at, id: last.id } : undefined };
  }

  /** Environments whose time is up (`expires_at <= now`), whatever their state, with their VMs. */
  listExpiredEnvs(now: Date): Promise<EnvRecord[]> {
    return this.loadEnvs((eb) => eb("envs.expires_at", "<=", now.toISOString()));
  }

  /** Environments in one of the states (e.g. `deleting`, to retry), with their VMs. */
  listEnvsInState(...states: EnvState[]): Promise<EnvRecord[]> {
    return this.loadEnvs((eb) => eb("envs.state", "in", states));
  }

  // ---- operations on environments: who carries them out, and until when ----

  /**
   * Environments in one of `states` whose operation `owner` could claim now (see claimEnvOperation): none
   * holds it, `owner` does, or its lease ran out. What a controller recovers after another one's death.
   */
  listClaimableEnvs(owner: string, states: readonly EnvState[]): Promise<EnvRecord[]> {
    const claimable = this.claimable(owner);
    return this.loadEnvs((eb) => eb.and([eb("envs.state", "in", states), claimable(eb)]));
  }

  /**
   * Makes `owner` the controller that carries out the environment's operation, and (with `to`) moves its
   * state there, in one compare-and-set: only if no other controller holds it (its lease ran out, or, on a
   * database no other process uses, always), (with `from`) its state is one of those, and (with `to`) the
   * lifecycle allows the move (src/protocol/env-lifecycle.ts). The environment with its VMs when claimed;
   * undefined when not (no such environment, another holds it, another state).
   */
  async claimEnvOperation(id: string, owner: string, change: { from?: readonly EnvState[]; to?: EnvState } = {}): Promise<EnvRecord | undefined> {
    const until = new Date(this.now().getTime() + this.leaseMs).toISOString();
    let query = this.db.updateTable("envs").set({ op_owner: owner, op_lease_until: until, state: change.to }).where("id", "=", id).where(this.claimable(owner));
    if (change.from !== undefined) query = query.where("state", "in", change.from);
    if (change.to !== undefined) query = query.where(mayMoveTo(change.to));
    const result = await query.executeTakeFirst();
    return result.numUpdatedRows > 0n ? this.findEnv(id) : undefined;
  }

  /** Extends `owner`'s leases on the environments given (those whose operations it is still carrying out). */
  async renewEnvOperations(owner: string, ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    const until = new Date(this.now().getTime() + this.leaseMs).toISOString();
    await this.db.updateTable("envs").set({ op_lease_until: until }).where("op_owner", "=", owner).where("id", "in", ids).execute();
  }

  /**
   * Ends `owner`'s operation on the environment, with its outcome as the state (without `state`, the state
   * stays: a later recovery carries on). False if `owner` no longer held it: another controller took it over
   * after this one's lease ran out, and that one's outcome stands. A 409 `conflict` if the lifecycle does not
   * allow the move (src/protocol/env-lifecycle.ts): the operation stays held, nothing is written.
   */
  async finishEnvOperation(id: string, owner: string, state?: EnvState): Promise<boolean> {
    let query = this.db.updateTable("envs").set({ op_owner: null, op_lease_until: null, state }).where("id", "=", id).where("op_owner", "=", owner);
    if (state !== undefined) query = query.where(mayMoveTo(state));
    const result = await query.executeTakeFirst();
    if (result.numUpdatedRows > 0n) return true;
    if (state === undefined) return false;
    // Still held by `owner`, so the state is what refused it.
    const env = await this.findEnv(id);
    if (env?.operation?.owner === owner) assertEnvMove(id, env.state, state);
    return false;
  }

  /** Which environments `owner` may claim: those nobody holds, its own, and (on a shared database) expired leases. */
  private claimable(owner: string): EnvCondition {
    if (!this.coordination.shared) return (eb) => eb.lit(true);
    const now = this.now().toISOString();
    return (eb) => eb.or([eb("envs.op_owner", "is", null), eb("envs.op_owner", "=", owner), eb("envs.op_lease_until", "<", now)]);
  }

  /**
   * Environments first, then their VMs: createEnv commits an env with its VMs, so every env the first query
   * sees has all its VMs in the second (VMs of an env created in between are dropped with it).
   */
  private async loadEnvs(where?: EnvCondition): Promise<EnvRecord[]> {
    const envQuery = this.db.selectFrom("envs").selectAll();
    const envRows = await (where ? envQuery.where(where) : envQuery).orderBy("created_at").orderBy("id").execute();
    if (envRows.length === 0) return [];
    const vmQuery = this.db.selectFrom("vms").selectAll();
    const vmRows = await (where ? vmQuery.where("env_id", "in", (eb) => eb.selectFrom("envs").select("envs.id").where(where)) : vmQuery)
      .orderBy("env_id")
      .orderBy("position")
      .execute();
    return envsWithVms(envRows, vmRows);
  }

  /** Moves the environment's state along the lifecycle (409 `conflict` for a move it does not allow), whoever holds its operation. */
  async setEnvState(id: string, state: EnvState): Promise<void> {
    const result = await this.db.updateTable("envs").set({ state }).where("id", "=", id).where(mayMoveTo(state)).executeTakeFirst();
    if (result.numUpdatedRows > 0n) return;
    const env = await this.getEnv(id);
    assertEnvMove(id, env.state, state);
    // Its state changed in between to one that may move: again.
    return this.setEnvState(id, state);
  }

  /** Only once all its VMs are deleted (409 otherwise); false if there was no such environment. */
  async deleteEnv(id: string): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const n = await countVms(trx, "env_id", id);
      if (n > 0)
        throw new CorralError(
          "conflict",
          `Cannot delete environment ${quote(id)}: ${plural(n, "VM")} of it ${n === 1 ? "remains" : "remain"}; delete ${n === 1 ? "it" : "them"} first`,
        );
      const result = await trx.deleteFrom("envs").where("id", "=", id).executeTakeFirst();
      return result.numDeletedRows > 0n;
    });
  }

  // ---- VMs ----

  async findVm(id: string): Promise<FleetVmRecord | undefined> {
    const row = await this.db.selectFrom("vms").selectAll().where("id", "=", id).executeTakeFirst();
    return row && vmFromRow(row);
  }

  getVm(id: string): Promise<FleetVmRecord> {
    return required(this.findVm(id), () => vmNotFound(id));
  }

  async listVmsOnHost(hostId: string): Promise<FleetVmRecord[]> {
    const rows = await this.db.selectFrom("vms").selectAll().where("host_id", "=", hostId).orderBy("env_id").orderBy("position").execute();
    return rows.map(vmFromRow);
  }

  /** `updatedAt` defaults to now. */
  async updateVm(id: string, patch: VmPatch): Promise<FleetVmRecord> {
    const row = await this.db.updateTable("vms").set(vmPatchToRow(patch, this.now().toISOString())).where("id", "=", id).returningAll().executeTakeFirst();
    if (!row) throw vmNotFound(id);
    return vmFromRow(row);
  }

  /**
   * Updates the VM only if nothing else did since `seen` was read (same `updatedAt`); false if something did,
   * or the VM is gone. For the heartbeat, whose report may be older than a create's or a delete's write.
   */
  async updateVmIfUnchanged(seen: Pick<FleetVmRecord, "id" | "updatedAt">, patch: VmPatch): Promise<boolean> {
    const result = await this.db
      .updateTable("vms")
      .set(vmPatchToRow(patch, this.now().toISOString()))
      .where("id", "=", seen.id)
      .where("updated_at", "=", seen.updatedAt)
      .executeTakeFirst();
    return result.numUpdatedRows > 0n;
  }

  /** Deletes the VM and gives its room back to its host, in one transaction; false if there was no such VM. */
  async deleteVm(id: string): Promise<boolean> {
    let hostId: string | undefined;
    try {
      return await this.db.transaction().execute(async (trx) => {
        // DELETE … RETURNING: of two concurrent deletes, only the one that removed the row gives the room back.
        const vm = await trx.deleteFrom("vms").where("id", "=", id).returning(["host_id", "cpu", "mem", "disk"]).executeTakeFirst();
        if (!vm) return false;
        hostId = vm.host_id;
        await this.addReserved(trx, vm.host_id, vm, "-");
        return true;
      });
    } finally {
      if (hostId !== undefined) this.placementView.changed([hostId]);
    }
  }

  // ---- fleet ----

  fleetStatus(): Promise<FleetTotals> {
    return queryFleetStatus(this.db, this.dialect);
  }

  /** Hosts by kind and state, environments and VMs by state. */
  stateCounts(): Promise<StateCounts> {
    return queryStateCounts(this.db);
  }

  // ---- events and leadership (coordination.ts) ----

  /** Sends small JSON events (each under 8000 bytes), in order, to every subscriber of every controller process on this database. */
  publish(...events: object[]): Promise<void> {
    return this.coordination.publish(...events);
  }

  subscribe(listener: EventListener): () => void {
    return this.coordination.subscribe(listener);
  }

  /** True while this process leads (SQLite: always); call again every few seconds while it does not. */
  tryAcquireLeadership(): Promise<boolean> {
    return this.coordination.tryAcquireLeadership();
  }

  /** Ends every connection (idempotent). */
  close(): Promise<void> {
    this.closing ??= this.coordination.close().then(() => this.db.destroy());
    return this.closing;
  }
}

async function countVms(db: FleetQueries, column: "host_id" | "env_id", id: string): Promise<number> {
  const { n } = await db
    .selectFrom("vms")
    .select((eb) => eb.fn.countAll().as("n"))
    .where(column, "=", id)
    .executeTakeFirstOrThrow();
  // PostgreSQL's count is a bigint, which pg returns as a string.
  return Number(n);
}

/** Where an environment is in listEnvs' order (by creation, then id): a page starts after one. */
export interface EnvPosition {
  createdAt: string;
  id: string;
}

function envsWithVms(envRows: readonly Selectable<FleetDatabase["envs"]>[], vmRows: readonly Selectable<VmsTable>[]): EnvRecord[] {
  const vmsByEnv = new Map<string, FleetVmRecord[]>(envRows.map((row) => [row.id, []]));
  for (const row of vmRows) vmsByEnv.get(row.env_id)?.push(vmFromRow(row));
  return envRows.map((row) => envFromRow(row, vmsByEnv.get(row.id) ?? []));
}
