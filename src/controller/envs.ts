// Environments: groups of VMs with a lifetime, placed across hosts (best fit, in the store's transaction),
// then created on their hosts in parallel. What each host answered is kept per VM: a partial failure shows
// as state `partial` with each failed VM's `error`; only when no VM at all could be made is the environment
// rolled back and the create answered with the hosts' error. Destroying (asked, or at expiry) deletes each
// VM on its host and forgets it once the host confirmed; an offline host is retried until it does.
import { CorralError, isErrorCode } from "../protocol/errors.ts";
import type { CreateEnv, Env, EnvState, FleetVm } from "../protocol/controller.ts";
import { CORRAL_ENGINES, TTSTACK_DEFAULTS, type AgentVm } from "../protocol/ttstack-agent.ts";
import { CorralApiError } from "../sdk/transport.ts";
import { KeyedLock } from "../util/keyed-lock.ts";
import type { Logger } from "../util/log.ts";
import { placeVms, type EnvRecord, type FleetStore, type FleetVmRecord, type HostEndpoint, type HostRecord, type NewFleetVm, type Overcommit } from "./db/index.ts";
import type { FleetEvents } from "./events.ts";
import { describeHostFailure, type HostLinks } from "./host-link.ts";

/** The VM states in which the VM exists on its host (as far as the controller knows). */
const ON_HOST = new Set(["creating", "booting", "running", "paused", "suspending", "suspended", "stopping", "stopped", "failed"]);

export interface EnvServiceDeps {
  store: FleetStore;
  links: HostLinks;
  events: FleetEvents;
  log: Logger;
  overcommit: Overcommit;
}

export type Removal = { done: true } | { done: false; env: EnvRecord };

/** The host part of a daemon's address, where a VM's mapped ports are reached. */
export function hostOfAddr(addr: string): string {
  const url = new URL(`http://${addr}`);
  return url.hostname.startsWith("[") ? url.hostname.slice(1, -1) : url.hostname;
}

/** The health a host reported for one of its VMs (TTstack's VM entry), in the controller's views. */
export function reportedHealth(reported: Pick<AgentVm, "health" | "health_detail"> | undefined): Pick<FleetVm, "health" | "health_detail"> {
  if (reported?.health === undefined) return {};
  return reported.health_detail === undefined ? { health: reported.health } : { health: reported.health, health_detail: reported.health_detail };
}

/** `host.vms`, when given, is the host's last report: the VM's health comes from there. */
export function fleetVmView(vm: FleetVmRecord, host: (Pick<HostRecord, "addr"> & Partial<Pick<HostRecord, "vms">>) | undefined): FleetVm {
  return {
    id: vm.id,
    env_id: vm.envId,
    host_id: vm.hostId,
    host_addr: host ? hostOfAddr(host.addr) : "",
    image: vm.image,
    engine: vm.engine,
    cpu: vm.cpu,
    mem: vm.mem,
    disk: vm.disk,
    ports: vm.ports,
    port_map: vm.portMap,
    deny_outgoing: vm.denyOutgoing,
    state: vm.state,
    ip: vm.ip,
    error: vm.error,
    created_at: vm.createdAt,
    ...reportedHealth(host?.vms?.find((reported) => reported.id === vm.id)),
  };
}

export function envView(env: EnvRecord, hosts: ReadonlyMap<string, Pick<HostRecord, "addr"> & Partial<Pick<HostRecord, "vms">>>): Env {
  return {
    id: env.id,
    owner: env.owner,
    ssh_keys: env.sshKeys,
    lifetime: env.lifetime,
    state: env.state,
    created_at: env.createdAt,
    expires_at: env.expiresAt,
    vms: env.vms.map((vm) => fleetVmView(vm, hosts.get(vm.hostId))),
  };
}

/** The VM fields a host's answer updates. */
function fromHost(answer: AgentVm): Pick<FleetVmRecord, "state" | "portMap" | "ip" | "error"> {
  return { state: answer.state as FleetVmRecord["state"], portMap: answer.port_map, ip: answer.ip, error: answer.last_error };
}

export class EnvService {
  /** One create, stop, start or destroy per environment at a time (in this process). */
  private readonly lock = new KeyedLock();

  constructor(private readonly deps: EnvServiceDeps) {}

  /** Places and creates an environment (see the file's opening). */
  async create(body: CreateEnv): Promise<EnvRecord> {
    for (const [index, spec] of body.vms.entries()) {
      const engine = spec.engine ?? TTSTACK_DEFAULTS.engine;
      if (!(CORRAL_ENGINES as readonly string[]).includes(engine)) {
        throw new CorralError("unsupported_engine", `Cannot create VM ${index + 1} with engine ${JSON.stringify(engine)}: Corral hosts run ${CORRAL_ENGINES.map((e) => JSON.stringify(e)).join(", ")}`);
      }
    }
    const vms: NewFleetVm[] = body.vms.map((spec, index) => ({
      id: `${body.id}-${index + 1}`,
      image: spec.image,
      engine: spec.engine ?? TTSTACK_DEFAULTS.engine,
      cpu: spec.cpu ?? TTSTACK_DEFAULTS.cpu,
      mem: spec.mem ?? TTSTACK_DEFAULTS.mem,
      disk: spec.disk ?? TTSTACK_DEFAULTS.disk,
      ports: [...new Set(spec.ports ?? [])],
      denyOutgoing: spec.deny_outgoing ?? false,
    }));
    return this.lock.run(body.id, async () => {
      const { store, events } = this.deps;
      const env = await store.createEnv(
        { id: body.id, owner: body.owner ?? "", sshKeys: body.ssh_keys, lifetime: body.lifetime ?? TTSTACK_DEFAULTS.lifetime },
        vms,
        (hosts, specs) => placeVms(hosts, specs, this.deps.overcommit),
      );
      await events.envsChanged(env.id);
      const hosts = await this.endpoints(env);
      const failures: string[] = [];
      await Promise.all(
        env.vms.map(async (vm) => {
          const host = hosts.get(vm.hostId);
          try {
            if (!host) throw new CorralError("host_not_found", `Host ${JSON.stringify(vm.hostId)} is gone`);
            const answer = await this.link(host).createVm({
              vm_id: vm.id,
              env_id: env.id,
              image: vm.image,
              engine: vm.engine,
              cpu: vm.cpu,
              mem: vm.mem,
              disk: vm.disk,
              ports: vm.ports,
              deny_outgoing: vm.denyOutgoing,
              ssh_keys: env.sshKeys,
            });
            await store.updateVm(vm.id, fromHost(answer));
          } catch (err) {
            failures.push(`VM ${vm.id} on host ${vm.hostId}: ${describeHostFailure(err)}`);
            await store.updateVm(vm.id, { state: "error", error: describeHostFailure(err) });
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
      await store.setEnvState(env.id, failures.length === 0 ? "running" : "partial");
      await events.vmsChanged(env.vms.map((vm) => vm.hostId));
      await events.envsChanged(env.id);
      return store.getEnv(env.id);
    });
  }

  get(id: string): Promise<EnvRecord> {
    return this.deps.store.getEnv(id);
  }

  list(): Promise<EnvRecord[]> {
    return this.deps.store.listEnvs();
  }

  /** Stops every VM of the environment (their disks stay); `partial` if some host could not. */
  stop(id: string): Promise<EnvRecord> {
    return this.power(id, "stop");
  }

  /** Starts every VM of the environment again. */
  start(id: string): Promise<EnvRecord> {
    return this.power(id, "start");
  }

  private power(id: string, action: "stop" | "start"): Promise<EnvRecord> {
    return this.lock.run(id, async () => {
      const { store, events } = this.deps;
      const env = await store.getEnv(id);
      if (env.state === "deleting") throw new CorralError("conflict", `Cannot ${action} environment ${JSON.stringify(id)}: it is being deleted`);
      await store.setEnvState(id, action === "stop" ? "stopping" : "starting");
      const hosts = await this.endpoints(env);
      let failed = 0;
      await Promise.all(
        env.vms.map(async (vm) => {
          const host = hosts.get(vm.hostId);
          if (!ON_HOST.has(vm.state) || !host) {
            failed++;
            return;
          }
          try {
            const link = this.link(host);
            const answer = action === "stop" ? await link.stopVm(vm.id) : await link.startVm(vm.id);
            await store.updateVm(vm.id, fromHost(answer));
          } catch (err) {
            failed++;
            await store.updateVm(vm.id, { error: `Cannot ${action} it: ${describeHostFailure(err)}` });
          }
        }),
      );
      const next: EnvState = failed > 0 ? "partial" : action === "stop" ? "stopped" : "running";
      await store.setEnvState(id, next);
      await events.vmsChanged(env.vms.map((vm) => vm.hostId));
      await events.envsChanged(id);
      return store.getEnv(id);
    });
  }

  /**
   * Destroys the environment: each VM deleted on its host and forgotten once the host confirmed. Done when
   * none is left; otherwise the environment stays `deleting` and `retryDeletions` carries on.
   */
  remove(id: string): Promise<Removal> {
    return this.lock.run(id, async () => {
      const { store, events } = this.deps;
      const env = await store.getEnv(id);
      if (env.state !== "deleting") {
        await store.setEnvState(id, "deleting");
        await events.envsChanged(id);
      }
      const hosts = await this.endpoints(env);
      const touched = new Set<string>();
      await Promise.all(
        env.vms.map(async (vm) => {
          const host = hosts.get(vm.hostId);
          try {
            if (host) await this.link(host).deleteVm(vm.id);
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
    });
  }

  /** One round of the lifetime check: expired environments, and deletions still waiting for a host. */
  async collectExpired(now: Date): Promise<void> {
    const { store, log } = this.deps;
    const due = [...(await store.listExpiredEnvs(now)), ...(await store.listEnvsInState("deleting"))];
    const seen = new Set<string>();
    for (const env of due) {
      if (seen.has(env.id)) continue;
      seen.add(env.id);
      try {
        const result = await this.remove(env.id);
        if (result.done && env.state !== "deleting") log.info({ env: env.id, expired_at: env.expiresAt }, "Environment expired and deleted");
      } catch (err) {
        if (!(err instanceof CorralError && err.code === "env_not_found")) log.warn({ env: env.id, err }, "Cannot delete an expired environment yet");
      }
    }
  }

  /** The addresses of the environment's hosts (of every host, without an environment), by id. */
  endpoints(env?: EnvRecord): Promise<Map<string, HostEndpoint>> {
    return this.deps.store.hostEndpoints(env?.vms.map((vm) => vm.hostId));
  }

  private link(host: HostEndpoint) {
    return this.deps.links.forHost(host);
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
