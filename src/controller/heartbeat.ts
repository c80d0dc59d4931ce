// Heartbeats: every interval the leading controller asks each host for its /api/info and /api/vms. A host
// that answers is online with a fresh report; one that fails twice in a row is offline. Each answer is
// reconciled with what the controller knows: its VMs' states, ports and addresses are updated, a VM its host
// no longer has is `lost`, a `pending` VM its host already runs (made by a create whose answer was never
// stored: its controller died) takes the host's state, and a VM this fleet made (the host kept the fleet's
// id with it) for an environment the controller no longer has (deleted while the host was away, or made by a
// create that timed out) is deleted on the host. Any other VM is left alone: a Slicer sandbox, another
// controller's (a TTstack controller's, or another Corral fleet's on a shared host), or one on a TTstack
// agent, which keeps no fleet id and so is never provably this fleet's.
import { KeyedLock } from "../util/keyed-lock.ts";
import type { Logger } from "../util/log.ts";
import type { FleetStore, FleetVmRecord, HostRecord, VmPatch } from "./db/index.ts";
import type { FleetEvents } from "./events.ts";
import { describeHostFailure, type HostDrivers } from "./host-driver.ts";
import type { HostReport, ReportedVm } from "./host-report.ts";
import type { ControllerMetrics } from "./metrics.ts";
import { differenceFrom, fromHost, madeByFleet } from "./host-vms.ts";

/** Consecutive failed heartbeats after which a host is offline. */
export const OFFLINE_AFTER_FAILURES = 2;
/** At most this many hosts are asked at once. */
const CONCURRENCY = 64;
/** Controller VM states the host's report does not override: the controller is acting on them. */
const CONTROLLER_OWNED = new Set(["deleting", "error"]);

/**
 * What a heartbeat changes in the controller's record of `vm` given its host's report of it (`there`,
 * undefined when the host did not list it); undefined for nothing. A `pending` VM is one a create has not
 * heard back about: the host may not have it yet, so its absence says nothing (it stays pending, never
 * `lost`), while a VM the host has that is this one (same environment and spec) is taken as it is there.
 */
export function heartbeatPatch(hostId: string, vm: FleetVmRecord, there: ReportedVm | undefined, fleetId: string): VmPatch | undefined {
  if (vm.state === "pending") {
    if (there === undefined || differenceFrom(vm, there, fleetId) !== undefined) return undefined;
    const { state, portMap, ip } = fromHost(there);
    return { state, portMap, ip };
  }
  if (CONTROLLER_OWNED.has(vm.state)) return undefined;
  if (there === undefined) return vm.state === "lost" ? undefined : { state: "lost", error: `Host ${JSON.stringify(hostId)} no longer has this VM` };
  if (there.state === vm.state && samePorts(vm.portMap, there.port_map)) return undefined;
  return { state: there.state, portMap: there.port_map, ip: there.ip, ...(vm.state === "lost" ? { error: null } : {}) };
}

export interface HeartbeatDeps {
  store: FleetStore;
  drivers: HostDrivers;
  events: FleetEvents;
  log: Logger;
  /** Times each host's answer (its kind's heartbeat histogram). */
  metrics?: Pick<ControllerMetrics, "heartbeat">;
}

export class Heartbeats {
  /**
   * One beat per host at a time. A power action refreshes its host at once (powerVm); a round's beat of the
   * same host that read the VM mid-action (libvirt's "in shutdown") and wrote after it left the list stale
   * until the next round.
   */
  private readonly perHost = new KeyedLock();

  constructor(private readonly deps: HeartbeatDeps) {}

  /**
   * One round over every host but those disconnected. The round lists only the hosts' ids, and each beat reads
   * its own host: reading every host's record at once parsed the reports and VM lists of the whole fleet in
   * one go (115-170 ms of the event loop at 1,000 hosts and 14,000 VMs, stalling every request meanwhile).
   */
  async beatAll(): Promise<void> {
    const ids = await this.deps.store.listConnectedHostIds();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < ids.length) {
        const id = ids[next++] as string;
        await this.beatById(id).catch((err: unknown) => this.deps.log.warn({ host: id, err }, "Heartbeat failed"));
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, ids.length) }, worker));
  }

  /** A beat of the host as it is stored when its turn comes (none if it went meanwhile). */
  private beatById(id: string): Promise<void> {
    return this.perHost.run(id, async () => {
      const host = await this.deps.store.findHost(id);
      if (host) await this.beatNow(host);
    });
  }

  /**
   * Asks one host; records what it said (or that it did not answer) and reconciles its VMs. A disconnected
   * host is not asked, and a host disconnected while it was asked keeps its state (the writes are skipped).
   */
  beat(host: HostRecord): Promise<void> {
    // A beat that waited for another reads the host as that one left it (its failures, its VM list).
    const waited = this.perHost.busy(host.id);
    return this.perHost.run(host.id, async () => {
      const current = waited ? await this.deps.store.findHost(host.id) : host;
      if (current) await this.beatNow(current);
    });
  }

  private async beatNow(host: HostRecord): Promise<void> {
    const { store, events, log } = this.deps;
    if (host.disconnected) return;
    const driver = this.deps.drivers.forHost(host);
    // Read before asking: a VM created while the host answers is then either unknown here (and its
    // environment exists, so it is no orphan) or changed since (and left alone), never taken for lost.
    const ours = await store.listVmsOnHost(host.id);
    let report: { info: HostReport; vms: ReportedVm[] };
    const asked = performance.now();
    try {
      const [info, vms] = await Promise.all([driver.info(), driver.vms()]);
      report = { info, vms };
      this.deps.metrics?.heartbeat(host.kind, "answered", (performance.now() - asked) / 1000);
    } catch (err) {
      this.deps.metrics?.heartbeat(host.kind, "failed", (performance.now() - asked) / 1000);
      const failures = host.failures + 1;
      const offline = failures >= OFFLINE_AFTER_FAILURES;
      const after = await store.updateHost(host.id, { failures, lastError: describeHostFailure(err), ...(offline ? { state: "offline" } : {}) }, { unlessDisconnected: true });
      if (after.disconnected) return;
      if (offline && host.state === "online") {
        log.warn({ host: host.id, err: describeHostFailure(err) }, "Host is offline");
        await events.hostsChanged();
      }
      return;
    }
    const now = new Date().toISOString();
    const after = await store.updateHost(
      host.id,
      { state: "online", failures: 0, lastSeenAt: now, lastError: null, info: report.info, vms: report.vms, hostname: report.info.hostname },
      { unlessDisconnected: true },
    );
    if (after.disconnected) return;
    const cameBack = host.state === "offline";
    if (cameBack) log.info({ host: host.id }, "Host is online again");
    const vmsChanged = (await this.reconcile(host, ours, report.vms, await store.fleetId())) || vmListChanged(host.vms, report.vms) || infoChanged(host, report.info);
    // Only a change of the hosts themselves is hosts-changed (Virtumancer's UI then reads every host again);
    // what changed on this host is vms-changed for it.
    if (cameBack) await events.hostsChanged();
    if (vmsChanged) await events.vmsChanged([host.id]);
  }

  /** Brings the controller's VMs on `host` in line with what it reported; true if any changed. */
  private async reconcile(host: HostRecord, ours: readonly FleetVmRecord[], reported: readonly ReportedVm[], fleetId: string): Promise<boolean> {
    const { store, log } = this.deps;
    const byId = new Map(reported.map((vm) => [vm.id, vm]));
    let changed = false;
    for (const vm of ours) {
      const next = heartbeatPatch(host.id, vm, byId.get(vm.id), fleetId);
      // Only if nothing wrote the VM since `ours` was read: a create's or a delete's answer is newer than this report.
      if (next && (await store.updateVmIfUnchanged(vm, next))) changed = true;
    }
    const known = new Set(ours.map((vm) => vm.id));
    for (const vm of reported) {
      if (vm.env_id === null || known.has(vm.id) || !madeByFleet(vm, fleetId)) continue;
      // A VM this fleet made for an environment that is gone.
      if (await store.findEnv(vm.env_id)) continue;
      try {
        await this.deps.drivers.forHost(host).deleteVm(vm.id);
        log.info({ host: host.id, vm: vm.id, env: vm.env_id }, "Deleted a VM of an environment that no longer exists");
        changed = true;
      } catch (err) {
        log.warn({ host: host.id, vm: vm.id, err: describeHostFailure(err) }, "Cannot delete an orphaned VM yet");
      }
    }
    return changed;
  }
}

function samePorts(a: Record<string, number>, b: Record<string, number>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}

/** Whether the host's VM list changed in a way a VM list shows (a VM came, went or changed state). */
function vmListChanged(before: readonly ReportedVm[], after: readonly ReportedVm[]): boolean {
  if (before.length !== after.length) return true;
  const states = new Map(before.map((vm) => [vm.id, vm.state]));
  return after.some((vm) => states.get(vm.id) !== vm.state);
}

function infoChanged(host: HostRecord, info: HostReport): boolean {
  const old = host.info;
  if (!old) return true;
  return old.cpu_used !== info.cpu_used || old.mem_used !== info.mem_used || old.vm_count !== info.vm_count || old.images.join() !== info.images.join();
}
