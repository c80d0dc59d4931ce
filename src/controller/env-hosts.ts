// The calls an environment's operations make to the hosts of its VMs: what each host has now (one list per
// host), and creating a VM so that a repeat is harmless: the VM's id is its name on the host, so a host that
// already has it (an earlier request's answer was lost with its controller) answers 409, and the VM there is
// adopted when it is this one, refused when it is a stranger with the name.
import { CorralError, quote } from "../protocol/errors.ts";
import { CorralApiError } from "../sdk/transport.ts";
import type { EnvRecord, FleetStore, FleetVmRecord, HostEndpoint } from "./db/index.ts";
import type { HostView } from "./env-recovery.ts";
import { describeHostFailure, type HostDrivers } from "./host-driver.ts";
import type { ReportedVm } from "./host-report.ts";
import { differenceFrom } from "./host-vms.ts";

export class EnvHosts {
  constructor(
    private readonly store: FleetStore,
    private readonly drivers: HostDrivers,
  ) {}

  /** The addresses of the environment's hosts (of every host, without an environment), by id. */
  endpoints(env?: EnvRecord): Promise<Map<string, HostEndpoint>> {
    return this.store.hostEndpoints(env?.vms.map((vm) => vm.hostId));
  }

  /** What each host of the environment has now, by host id; every host is asked once, all at once. */
  async views(env: EnvRecord): Promise<Map<string, HostView>> {
    const hosts = await this.endpoints(env);
    const views = new Map<string, HostView>();
    await Promise.all(
      [...new Set(env.vms.map((vm) => vm.hostId))].map(async (hostId) => {
        const host = hosts.get(hostId);
        if (host === undefined) {
          views.set(hostId, { kind: "gone" });
          return;
        }
        try {
          const vms = await this.drivers.forHost(host).vms();
          views.set(hostId, { kind: "answered", vms: new Map(vms.map((vm) => [vm.id, vm])) });
        } catch (err) {
          views.set(hostId, { kind: "unreachable", reason: describeHostFailure(err), offline: host.state === "offline" });
        }
      }),
    );
    return views;
  }

  /**
   * Creates the VM on its host; the host's answer. A 409 from the host means it has a VM of that name: the
   * one asked for (adopted: its answer is returned) or another (409 `conflict`, saying how it differs).
   */
  async make(env: EnvRecord, vm: FleetVmRecord, host: HostEndpoint | undefined): Promise<ReportedVm> {
    if (host === undefined) throw new CorralError("host_not_found", `Host ${quote(vm.hostId)} is gone`);
    const driver = this.drivers.forHost(host);
    const fleetId = await this.store.fleetId();
    try {
      return await driver.createVm({
        vm_id: vm.id,
        env_id: env.id,
        image: vm.image,
        engine: vm.engine,
        cpu: vm.cpu,
        mem: vm.mem,
        disk: vm.disk,
        ports: vm.ports,
        deny_outgoing: vm.denyOutgoing,
        // The environment's keys and the VM's own, each once (TTstack's controller merges them alike, handler.rs:293-298).
        ssh_keys: [...new Set([...env.sshKeys, ...vm.sshKeys])],
        fleet_id: fleetId,
      });
    } catch (err) {
      if (!(err instanceof CorralApiError && err.status === 409)) throw err;
      const there = await driver.vm(vm.id);
      const difference = differenceFrom(vm, there, fleetId);
      if (difference !== undefined) {
        throw new CorralError("conflict", `Host ${quote(host.id)} already has a VM named ${quote(vm.id)} that is not this one: ${difference}`, { cause: err });
      }
      return there;
    }
  }
}
