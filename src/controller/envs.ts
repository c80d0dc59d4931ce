// Environments: groups of VMs with a lifetime, placed across hosts (best fit, in the store's transaction),
// then created on their hosts in parallel. What each host answered is kept per VM: a partial failure shows
// as state `partial` with each failed VM's `error`; only when no VM at all could be made is the environment
// rolled back and the create answered with the hosts' error. Destroying (asked, or at expiry) deletes each
// VM on its host and forgets it once the host confirmed; an offline host is retried until it does.
//
// Each create, stop, start and delete is carried out by one controller process, which holds it in the
// database with a lease it renews (FleetStore.claimEnvOperation): in this process a per-environment lock
// orders them, across processes the lease does. An environment left in `creating`, `stopping`, `starting` or
// `deleting` by a controller that died (its lease ran out; on SQLite, any other process's) is recovered by
// the leader (`recoverInterrupted`): a create is finished (env-recovery.ts), a stop or start carried out
// again, a delete carried on; each step is safe to repeat on the hosts.
import { CorralError, isErrorCode, quote } from "../protocol/errors.ts";
import type { CreateEnv } from "../protocol/controller.ts";
import { canMoveEnv, envStatesLeadingTo, IN_FLIGHT_STATES, isInFlight, type EnvState } from "../protocol/env-lifecycle.ts";
import { TT_ENGINES } from "../protocol/ttstack.ts";
import { TTSTACK_DEFAULTS } from "../protocol/ttstack-agent.ts";
import { CorralApiError } from "../sdk/transport.ts";
import { crashPoint } from "../util/crash-points.ts";
import { KeyedLock } from "../util/keyed-lock.ts";
import type { Logger } from "../util/log.ts";
import { placeVms, type EnvPosition, type EnvRecord, type FleetStore, type HostEndpoint, type HostRecord, type NewFleetVm, type Overcommit } from "./db/index.ts";
import { EnvHosts } from "./env-hosts.ts";
import { createOutcome, planCreateStep, planDeleteStep, refreshPatch } from "./env-recovery.ts";
import { envsChangedEvent, type FleetEvents } from "./events.ts";
import type { ControllerMetrics } from "./metrics.ts";
import { describeHostFailure, type HostDrivers } from "./host-driver.ts";
import type { ReportedVm } from "./host-report.ts";
import { fromHost } from "./host-vms.ts";
import { vmIdOf } from "./vm-ids.ts";

/** The VM states in which the VM exists on its host (as far as the controller knows). */
const ON_HOST = new Set(["creating", "booting", "running", "paused", "suspending", "suspended", "stopping", "stopped", "failed"]);

/** VM states in which a stop or a start has nothing left to do (the host's own stop and start are idempotent too). */
const DONE_BY: Record<PowerAction, ReadonlySet<string>> = {
  stop: new Set(["stopping", "stopped"]),
  start: new Set(["creating", "booting", "running"]),
};

type PowerAction = "stop" | "start";

/** The state a stop or a start holds the environment in while it is carried out. */
const UNDER_WAY: Record<PowerAction, EnvState> = { stop: "stopping", start: "starting" };

export interface EnvServiceDeps {
  store: FleetStore;
  drivers: HostDrivers;
  events: FleetEvents;
  log: Logger;
  overcommit: Overcommit;
  /** This controller process's id: the owner of the operations it carries out (a new one at each start). */
  owner: string;
  /** Counts and times placements. */
  metrics?: Pick<ControllerMetrics, "placed">;
}

export type Removal = { done: true } | { done: false; env: EnvRecord };

/**
 * A create's outcome: the environment, and its hosts' addresses with what each answered for the VMs it made
 * (their health): all that its EnvDetail shows, without reading the hosts' records again.
 */
export interface CreatedEnv {
  env: EnvRecord;
  hosts: ReadonlyMap<string, Pick<HostRecord, "addr" | "vms">>;
}

/** What a stop or a start did: the environment as it ended, and the first VM that could not (if one could not). */
export interface PowerOutcome {
  env: EnvRecord;
  failure: { vmId: string; error: unknown } | undefined;
}

export class EnvService {
  /** One create, stop, start or destroy per environment at a time (in this process). */
  private readonly lock = new KeyedLock();
  /** Environments whose operation this process is carrying out: their leases are renewed (renewLeases). */
  private readonly inFlight = new Set<string>();
  private readonly hosts: EnvHosts;

  constructor(private readonly deps: EnvServiceDeps) {
    this.hosts = new EnvHosts(deps.store, deps.drivers);
  }

  /** Places and creates an environment (see the file's opening). */
  async create(body: CreateEnv): Promise<CreatedEnv> {
    for (const [index, spec] of body.vms.entries()) {
      const engine = spec.engine ?? TTSTACK_DEFAULTS.engine;
      // Any engine TTstack names: placement then finds a host that runs it (Corral daemons run qemu; a TTstack
      // agent says which it runs).
      if (!(TT_ENGINES as readonly string[]).includes(engine)) {
        throw new CorralError(
          "unsupported_engine",
          `Cannot create VM ${index + 1} with engine ${JSON.stringify(engine)}: the engines are ${TT_ENGINES.map((e) => JSON.stringify(e)).join(", ")}`,
        );
      }
    }
    // As TTstack's serde and controller read a request: a size that is absent or null is the default.
    const vms: NewFleetVm[] = body.vms.map((spec, index) => ({
      id: vmIdOf(body.id, index + 1),
      image: spec.image,
      engine: spec.engine ?? TTSTACK_DEFAULTS.engine,
      cpu: spec.cpu ?? TTSTACK_DEFAULTS.cpu,
      mem: spec.mem ?? TTSTACK_DEFAULTS.mem,
      disk: spec.disk ?? TTSTACK_DEFAULTS.disk,
      ports: [...new Set(spec.ports ?? [])],
      denyOutgoing: spec.deny_outgoing ?? false,
      sshKeys: spec.ssh_keys ?? [],
    }));
    // TTstack: a lifetime that is absent, null or 0 is the default (crates/ctl/src/handler.rs:266-270).
    const lifetime = body.lifetime ? body.lifetime : TTSTACK_DEFAULTS.lifetime;
    return this.lock.run(body.id, async () => {
      const { store, events } = this.deps;
      // Stored with this process holding the create: from here on a crash leaves it to recoverInterrupted.
      const env = await this.timedPlacement(() =>
        store.createEnv(
          { id: body.id, owner: body.owner ?? "", sshKeys: body.ssh_keys ?? [], lifetime, operationOwner: this.deps.owner },
          vms,
          (hosts, specs) => placeVms(hosts, specs, this.deps.overcommit),
          // Told by the placement itself (on PostgreSQL with its commit: one statement for a whole batch of creates).
          [envsChangedEvent(body.id)],
        ),
      );
      return this.holding(env.id, async () => {
        crashPoint("env-create.placed");
        const hosts = await this.hosts.endpoints(env);
        const failures: string[] = [];
        const made = [...env.vms];
        // What each host answered for the VMs it made: their health, for the answer (EnvDetail).
        const reported = new Map<string, ReportedVm[]>();
        await Promise.all(
          env.vms.map(async (vm, position) => {
            try {
              const answer = await this.hosts.make(env, vm, hosts.get(vm.hostId));
              made[position] = await store.updateVm(vm.id, fromHost(answer));
              reported.set(vm.hostId, [...(reported.get(vm.hostId) ?? []), answer]);
              crashPoint("env-create.vm-created");
            } catch (err) {
              failures.push(`VM ${vm.id} on host ${vm.hostId}: ${describeHostFailure(err)}`);
              made[position] = await store.updateVm(vm.id, { state: "error", error: describeHostFailure(err) });
              this.deps.log.warn({ env: env.id, vm: vm.id, host: vm.hostId, err }, "A VM of an environment could not be created");
              if (failures.length === env.vms.length) throw err;
            }
          }),
        ).catch(async (err: unknown) => {
          // Nothing was made: forget the environment (a host that made a VM after all has it deleted by the
          // next heartbeat's reconciliation, as an orphan) and answer with the hosts' error.
          for (const vm of env.vms) await store.deleteVm(vm.id);
          await store.deleteEnv(env.id);
          await events.envsChanged(env.id);
          throw envCreateFailure(env.id, failures, err);
        });
        crashPoint("env-create.all-created");
        // The VMs as this create last wrote them (updateVm's answers): no read of what it just wrote.
        const state = createOutcome(made) ?? "partial";
        const finished = await this.finish(env.id, state);
        await events.envAndVmsChanged(
          env.id,
          env.vms.map((vm) => vm.hostId),
        );
        // Finished, the environment is the one placed with its new state and VMs (nothing else writes it while
        // this process holds its operation); taken over meanwhile, it is what the other controller made it.
        const result = finished ? { ...env, state, operation: null, vms: made } : await store.getEnv(env.id);
        return { env: result, hosts: new Map([...hosts].map(([id, host]) => [id, { addr: host.addr, vms: reported.get(id) ?? [] }])) };
      });
    });
  }

  /** Runs a placement (the store's transaction that places and records an environment), counted and timed by outcome. */
  private async timedPlacement(place: () => Promise<EnvRecord>): Promise<EnvRecord> {
    const started = performance.now();
    const seconds = (): number => (performance.now() - started) / 1000;
    try {
      const env = await place();
      this.deps.metrics?.placed("placed", seconds());
      return env;
    } catch (err) {
      this.deps.metrics?.placed(err instanceof CorralError ? err.code : "failed", seconds());
      throw err;
    }
  }

  get(id: string): Promise<EnvRecord> {
    return this.deps.store.getEnv(id);
  }

  /** A page of the environments, oldest first: see FleetStore.listEnvsPage. */
  page(limit: number, after?: EnvPosition): Promise<{ envs: EnvRecord[]; next: EnvPosition | undefined }> {
    return this.deps.store.listEnvsPage(limit, after);
  }

  /** Stops every VM of the environment (their disks stay); `partial` if some host could not. */
  stop(id: string): Promise<PowerOutcome> {
    return this.power(id, "stop");
  }

  /** Starts every VM of the environment again. */
  start(id: string): Promise<PowerOutcome> {
    return this.power(id, "start");
  }

  private power(id: string, action: PowerAction): Promise<PowerOutcome> {
    return this.lock.run(id, async () => {
      // Claimed in the state it is in (the lifecycle says from which a stop or a start may begin), moved on below.
      const env = await this.claim(id, action, { from: envStatesLeadingTo(UNDER_WAY[action]) });
      return this.holding(id, async () => {
        // A create whose controller died is finished first: its VMs must exist before they can be stopped.
        if (env.state === "creating") await this.finishCreate(env, { waitForHosts: false });
        await this.claim(id, action, { to: UNDER_WAY[action] });
        await this.deps.events.envsChanged(id);
        return this.carryOutPower(id, action);
      });
    });
  }

  /** Stops or starts each VM the host has not already stopped or started; the environment's new state. */
  private async carryOutPower(id: string, action: PowerAction): Promise<PowerOutcome> {
    const { store, events } = this.deps;
    const env = await this.refreshFromHosts(await store.getEnv(id));
    const hosts = await this.hosts.endpoints(env);
    let failed = 0;
    let failure: PowerOutcome["failure"];
    await Promise.all(
      env.vms.map(async (vm) => {
        if (DONE_BY[action].has(vm.state)) return;
        const host = hosts.get(vm.hostId);
        if (!ON_HOST.has(vm.state) || !host) {
          failed++;
          failure ??= {
            vmId: vm.id,
            error: new CorralError("conflict", host ? `it is ${vm.state}${vm.error ? ` (${vm.error})` : ""}` : `its host ${quote(vm.hostId)} is no longer registered`),
          };
          return;
        }
        try {
          const driver = this.deps.drivers.forHost(host);
          const answer = action === "stop" ? await driver.stopVm(vm.id) : await driver.startVm(vm.id);
          await store.updateVm(vm.id, fromHost(answer));
          crashPoint("env-power.vm-done");
        } catch (err) {
          failed++;
          failure ??= { vmId: vm.id, error: err };
          await store.updateVm(vm.id, { error: `Cannot ${action} it: ${describeHostFailure(err)}` });
        }
      }),
    );
    const next: EnvState = failed > 0 ? "partial" : action === "stop" ? "stopped" : "running";
    await this.finish(id, next);
    await events.envAndVmsChanged(
      id,
      env.vms.map((vm) => vm.hostId),
    );
    return { env: await store.getEnv(id), failure };
  }

  /**
   * Destroys the environment: each VM deleted on its host and forgotten once the host confirmed. Done when
   * none is left; otherwise the environment stays `deleting` and `recoverInterrupted` carries on.
   */
  remove(id: string): Promise<Removal> {
    return this.lock.run(id, async () => {
      const before = await this.deps.store.getEnv(id);
      await this.claim(id, "delete", { to: "deleting" });
      if (before.state !== "deleting") await this.deps.events.envsChanged(id);
      return this.holding(id, () => this.carryOutRemoval(id));
    });
  }

  private async carryOutRemoval(id: string): Promise<Removal> {
    const { store, events } = this.deps;
    const env = await store.getEnv(id);
    const [views, hosts, fleetId] = await Promise.all([this.hosts.views(env), this.hosts.endpoints(env), store.fleetId()]);
    const touched = new Set<string>();
    await Promise.all(
      env.vms.map(async (vm) => {
        const step = planDeleteStep(vm, views.get(vm.hostId) ?? { kind: "gone" }, fleetId);
        const host = hosts.get(vm.hostId);
        try {
          if (step.kind === "retry") throw new Error(step.reason);
          if (step.kind === "delete" && host) await this.deps.drivers.forHost(host).deleteVm(vm.id);
          if (step.kind === "forget" && step.stranger) this.deps.log.info({ env: id, vm: vm.id, host: vm.hostId }, "Left alone a VM of this name that is not this environment's");
          crashPoint("env-delete.host-deleted");
          await store.deleteVm(vm.id);
          touched.add(vm.hostId);
        } catch (err) {
          await store.updateVm(vm.id, { state: "deleting", error: `Cannot delete it yet: ${describeHostFailure(err)}` }).catch(() => undefined);
        }
      }),
    );
    if (touched.size > 0) await events.vmsChanged(touched);
    const left = await store.getEnv(id);
    if (left.vms.length > 0) return { done: false, env: left };
    await store.deleteEnv(id);
    await events.envsChanged(id);
    this.deps.log.info({ env: id }, "Environment deleted");
    return { done: true };
  }

  /** One round of the lifetime check: environments whose time is up are deleted. */
  async collectExpired(now: Date): Promise<void> {
    const { store, log } = this.deps;
    for (const env of await store.listExpiredEnvs(now)) {
      try {
        const result = await this.remove(env.id);
        if (result.done && env.state !== "deleting") log.info({ env: env.id, expired_at: env.expiresAt }, "Environment expired and deleted");
      } catch (err) {
        // Gone meanwhile, or another live controller is carrying out an operation on it: the next round sees.
        if (!(err instanceof CorralError && (err.code === "env_not_found" || err.code === "conflict"))) log.warn({ env: env.id, err }, "Cannot delete an expired environment yet");
      }
    }
  }

  /**
   * One round of recovery: environments left in `creating`, `stopping`, `starting` or `deleting` with no live
   * controller carrying the operation out (its controller died, or a delete waits for a host) are taken over
   * and finished. Expired ones are left to the lifetime check, which deletes them.
   */
  async recoverInterrupted(now: Date): Promise<void> {
    const { store, log } = this.deps;
    for (const env of await store.listClaimableEnvs(this.deps.owner, IN_FLIGHT_STATES)) {
      if (this.inFlight.has(env.id) || Date.parse(env.expiresAt) <= now.getTime()) continue;
      try {
        await this.recover(env);
      } catch (err) {
        if (!(err instanceof CorralError && (err.code === "env_not_found" || err.code === "conflict")))
          log.warn({ env: env.id, err }, "Cannot recover an interrupted environment yet");
      }
    }
  }

  private recover(seen: EnvRecord): Promise<void> {
    return this.lock.run(seen.id, async () => {
      const { store, events, log } = this.deps;
      const env = await store.claimEnvOperation(seen.id, this.deps.owner, { from: IN_FLIGHT_STATES });
      if (env === undefined) return;
      // A delete waiting for a host was let go by its controller: carrying it on is routine, not a recovery.
      const interrupted = seen.operation !== null;
      await this.holding(env.id, async () => {
        let outcome: string;
        if (env.state === "deleting") {
          const result = await this.carryOutRemoval(env.id);
          if (!result.done) return;
          outcome = "deleted";
        } else if (env.state === "creating" && env.vms.length === 0) {
          // The rollback of a create that made nothing was cut short: finish it (such an environment is not kept).
          await store.deleteEnv(env.id);
          await events.envsChanged(env.id);
          outcome = "deleted";
        } else if (env.state === "creating") {
          const state = await this.finishCreate(env, { waitForHosts: true });
          if (state === undefined) return;
          await this.finish(env.id, state);
          await events.envAndVmsChanged(
            env.id,
            env.vms.map((vm) => vm.hostId),
          );
          outcome = state;
        } else {
          outcome = (await this.carryOutPower(env.id, env.state === "stopping" ? "stop" : "start")).env.state;
        }
        if (interrupted) log.info({ env: env.id, was: env.state, now: outcome, by: seen.operation?.owner }, "Recovered environment interrupted by its controller's death");
      });
    });
  }

  /**
   * Finishes a create whose controller died (env-recovery.ts decides per VM); the state it ends in, or
   * undefined while a host that may soon answer has not (with `waitForHosts`; without, such a VM fails).
   */
  private async finishCreate(env: EnvRecord, options: { waitForHosts: boolean }): Promise<EnvState | undefined> {
    const { store } = this.deps;
    const [views, hosts, fleetId] = await Promise.all([this.hosts.views(env), this.hosts.endpoints(env), store.fleetId()]);
    await Promise.all(
      env.vms.map(async (vm) => {
        const step = planCreateStep(vm, views.get(vm.hostId) ?? { kind: "gone" }, fleetId);
        switch (step.kind) {
          case "keep":
            return;
          case "adopt":
            await store.updateVm(vm.id, step.patch);
            return;
          case "fail":
            await store.updateVm(vm.id, { state: "error", error: step.error });
            return;
          case "wait":
            if (!options.waitForHosts)
              await store.updateVm(vm.id, { state: "error", error: `Cannot finish creating it: host ${quote(vm.hostId)} did not answer (${step.reason})` });
            return;
          case "create":
            try {
              await store.updateVm(vm.id, fromHost(await this.hosts.make(env, vm, hosts.get(vm.hostId))));
            } catch (err) {
              await store.updateVm(vm.id, { state: "error", error: describeHostFailure(err) });
            }
        }
      }),
    );
    return createOutcome((await store.getEnv(env.id)).vms);
  }

  /** The environment with each VM's record brought in line with what its host has now. */
  private async refreshFromHosts(env: EnvRecord): Promise<EnvRecord> {
    const views = await this.hosts.views(env);
    const fleetId = await this.deps.store.fleetId();
    const patches = env.vms.map((vm) => [vm, refreshPatch(vm, views.get(vm.hostId) ?? { kind: "gone" }, fleetId)] as const);
    await Promise.all(patches.map(([vm, patch]) => patch && this.deps.store.updateVm(vm.id, patch)));
    return patches.some(([, patch]) => patch) ? this.deps.store.getEnv(env.id) : env;
  }

  /**
   * Makes this process the one carrying out `verb` on the environment (FleetStore.claimEnvOperation); the
   * environment as claimed. 404 if there is none; 409 if its state forbids `verb` or another live controller
   * is carrying out an operation on it.
   */
  private async claim(id: string, verb: string, change: { from?: readonly EnvState[]; to?: EnvState }): Promise<EnvRecord> {
    const { store, owner } = this.deps;
    const claimed = await store.claimEnvOperation(id, owner, change);
    if (claimed) return claimed;
    const env = await store.getEnv(id);
    // Its state forbids the verb (the lifecycle's table, src/protocol/env-lifecycle.ts).
    if ((change.from !== undefined && !change.from.includes(env.state)) || (change.to !== undefined && !canMoveEnv(env.state, change.to))) {
      throw new CorralError("conflict", `Cannot ${verb} environment ${quote(id)}: it is ${env.state === "deleting" ? "being deleted" : env.state}`);
    }
    // The in-flight states read as what the holder does: "is creating it", "is deleting it".
    const doing = isInFlight(env.state) ? env.state : "working on";
    throw new CorralError("conflict", `Cannot ${verb} environment ${quote(id)}: controller ${quote(env.operation?.owner ?? "")} is ${doing} it; try again when it is done`);
  }

  /** Runs `operation` with this process's lease on the environment renewed; lets the lease go at the end, whatever happened. */
  private async holding<T>(id: string, operation: () => Promise<T>): Promise<T> {
    this.inFlight.add(id);
    try {
      return await operation();
    } finally {
      // Unless `finish` already ended it: let it go without a state (the state stays; the next recovery carries on).
      if (this.inFlight.delete(id)) {
        await this.deps.store.finishEnvOperation(id, this.deps.owner).catch((err: unknown) => this.deps.log.warn({ env: id, err }, "Cannot let go of an environment's operation"));
      }
    }
  }

  /**
   * Ends this process's operation on the environment with `state` (it is no longer held: `holding` has
   * nothing left to let go); false, logged, when another controller took it over meanwhile.
   */
  private async finish(id: string, state: EnvState): Promise<boolean> {
    const finished = await this.deps.store.finishEnvOperation(id, this.deps.owner, state);
    this.inFlight.delete(id);
    if (!finished) this.deps.log.warn({ env: id, state }, "Another controller took over this environment's operation (this one's lease ran out): its outcome stands");
    return finished;
  }

  /** Extends the leases of the operations this process is carrying out (the controller calls it every few seconds). */
  renewLeases(): Promise<void> {
    return this.deps.store.renewEnvOperations(this.deps.owner, [...this.inFlight]);
  }

  /** The addresses of the environment's hosts (of every host, without an environment), by id. */
  endpoints(env?: EnvRecord): Promise<Map<string, HostEndpoint>> {
    return this.hosts.endpoints(env);
  }
}

/** The error for a create of which no VM could be made: the hosts' own code when they refused. */
function envCreateFailure(envId: string, failures: readonly string[], cause: unknown): CorralError {
  const message = `Cannot create environment ${JSON.stringify(envId)}: no VM could be made (${failures.join("; ")})`;
  if (cause instanceof CorralApiError && cause.status >= 400 && cause.status < 500 && isErrorCode(cause.code)) {
    return new CorralError(cause.code, message, { cause, status: cause.status });
  }
  if (cause instanceof CorralError) return new CorralError(cause.code, message, { cause });
  return new CorralError("host_unreachable", message, { cause });
}
