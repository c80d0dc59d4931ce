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
import { LoopShare, type LoopShareOptions } from "../util/loop-share.ts";
import type { Logger } from "../util/log.ts";
import type { BackendName, FleetStore, FleetVmRecord, HostRecord, VmPatch } from "./db/index.ts";
import type { FleetEvents } from "./events.ts";
import { describeHostFailure, type HostDrivers } from "./host-driver.ts";
import type { HostReport, ReportedVm } from "./host-report.ts";
import type { ControllerMetrics } from "./metrics.ts";
import { differenceFrom, fromHost, madeByFleet } from "./host-vms.ts";

/** Consecutive failed heartbeats after which a host is offline. */
export const OFFLINE_AFTER_FAILURES = 2;
/**
 * At most this many hosts are asked at once, not counting those slower than SLOW_HOST_MS. At 64 their answers
 * came in bursts that the loop then parsed in one turn (up to 128 answers: 40-90 ms at 1,000 hosts).
 */
const CONCURRENCY = 16;
/** A host that has not answered after this long gives its place to the next: dead hosts (each waits out the read timeout) must not stall a round. */
const SLOW_HOST_MS = 1000;
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

/**
 * How a beat's work on the controller (reading the host and its VMs, writing the answer, reconciling) shares
 * the event loop with requests. Hosts asked together answer together, and handling each answer in the turn it
 * arrived held the loop for 40-90 ms at 1,000 hosts (every request queued behind). On SQLite that work
 * is synchronous (better-sqlite3), so one beat's at a time, a few milliseconds of them per turn; on PostgreSQL
 * it waits on the database, so several at once, or a round would wait on each query in turn.
 */
const SHARE: Record<BackendName, LoopShareOptions> = { sqlite: { width: 1, budgetMs: 2 }, postgres: { width: 8, budgetMs: 4 } };

/** What a beat read before asking its host. */
interface BeatStart {
  host: HostRecord;
  /** The controller's VMs on the host, read before the host was asked (see beatNow). */
  ours: FleetVmRecord[];
}

export class Heartbeats {
  /**
   * One beat per host at a time. A power action refreshes its host at once (powerVm); a round's beat of the
   * same host that read the VM mid-action (libvirt's "in shutdown") and wrote after it left the list stale
   * until the next round.
   */
  private readonly perHost = new KeyedLock();
  private readonly share: LoopShare;

  constructor(private readonly deps: HeartbeatDeps) {
    this.share = new LoopShare(SHARE[deps.store.backend]);
  }

  /**
   * One round over every host but those disconnected. The round lists only the hosts' ids, and each beat reads
   * its own host: reading every host's record at once parsed the reports and VM lists of the whole fleet in
   * one go (115-170 ms of the event loop at 1,000 hosts and 14,000 VMs, stalling every request meanwhile).
   */
  async beatAll(): Promise<void> {
    const ids = await this.deps.store.listConnectedHostIds();
    if (ids.length === 0) return;
    await new Promise<void>((resolve) => {
      let next = 0;
      let asking = 0;
      let done = 0;
      const askMore = (): void => {
        while (asking < CONCURRENCY && next < ids.length) {
          const id = ids[next++] as string;
          asking++;
          let released = false;
          const release = (): void => {
            if (released) return;
            released = true;
            asking--;
            askMore();
          };
          this.beatById(id, release)
            .catch((err: unknown) => this.deps.log.warn({ host: id, err }, "Heartbeat failed"))
            .finally(() => {
              release();
              if (++done === ids.length) resolve();
            });
        }
      };
      askMore();
    });
  }

  /** A beat of the host as it is stored when its turn comes (none if it went meanwhile). */
  private beatById(id: string, onSlow: () => void): Promise<void> {
    return this.perHost.run(id, () => this.beatNow(() => this.deps.store.findHost(id), onSlow));
  }

  /**
   * Asks one host; records what it said (or that it did not answer) and reconciles its VMs. A disconnected
   * host is not asked, and a host disconnected while it was asked keeps its state (the writes are skipped).
   */
  beat(host: HostRecord): Promise<void> {
    // A beat that waited for another reads the host as that one left it (its failures, its VM list).
    const waited = this.perHost.busy(host.id);
    return this.perHost.run(host.id, () => this.beatNow(async () => (waited ? await this.deps.store.findHost(host.id) : host)));
  }

  /** `onSlow`: called if the host has not answered after SLOW_HOST_MS. */
  private async beatNow(readHost: () => Promise<HostRecord | undefined>, onSlow?: () => void): Promise<void> {
    const { store, events, log } = this.deps;
    // Read before asking: a VM created while the host answers is then either unknown here (and its
    // environment exists, so it is no orphan) or changed since (and left alone), never taken for lost.
    const start = await this.share.run(async (): Promise<BeatStart | undefined> => {
      const host = await readHost();
      return host && !host.disconnected ? { host, ours: await store.listVmsOnHost(host.id) } : undefined;
    });
    if (!start) return;
    const { host, ours } = start;
    const driver = this.deps.drivers.forHost(host);
    let report: { info: HostReport; vms: ReportedVm[] };
    const asked = performance.now();
    const slow = onSlow && setTimeout(onSlow, SLOW_HOST_MS);
    try {
      const [info, vms] = await Promise.all([driver.info(), driver.vms()]).finally(() => clearTimeout(slow));
      report = { info, vms };
      this.deps.metrics?.heartbeat(host.kind, "answered", (performance.now() - asked) / 1000);
    } catch (err) {
      this.deps.metrics?.heartbeat(host.kind, "failed", (performance.now() - asked) / 1000);
      const failures = host.failures + 1;
      const offline = failures >= OFFLINE_AFTER_FAILURES;
      const patch = { failures, lastError: describeHostFailure(err), ...(offline ? { state: "offline" as const } : {}) };
      if (!(await this.share.run(() => store.updateConnectedHost(host.id, patch)))) return;
      if (offline && host.state === "online") {
        log.warn({ host: host.id, err: describeHostFailure(err) }, "Host is offline");
        await events.hostsChanged();
      }
      return;
    }
    const recorded = await this.share.run(async () => {
      const patch = {
        state: "online" as const,
        failures: 0,
        lastSeenAt: new Date().toISOString(),
        lastError: null,
        info: report.info,
        vms: report.vms,
        hostname: report.info.hostname,
      };
      if (!(await store.updateConnectedHost(host.id, patch))) return undefined;
      return this.reconcile(host, ours, report.vms, await store.fleetId());
    });
    if (!recorded) return;
    const cameBack = host.state === "offline";
    if (cameBack) log.info({ host: host.id }, "Host is online again");
    // Outside the loop's share: each is a call to the host.
    const deleted = await this.deleteOrphans(host, recorded.orphans);
    const vmsChanged = recorded.changed || deleted || vmListChanged(host.vms, report.vms) || infoChanged(host, report.info);
    // Only a change of the hosts themselves is hosts-changed (Virtumancer's UI then reads every host again);
    // what changed on this host is vms-changed for it.
    if (cameBack) await events.hostsChanged();
    if (vmsChanged) await events.vmsChanged([host.id]);
  }

  /**
   * Brings the controller's VMs on `host` in line with what it reported: `changed` if any record changed, and
   * the VMs this fleet made for environments that are gone (`orphans`, for deleteOrphans).
   */
  private async reconcile(
    host: HostRecord,
    ours: readonly FleetVmRecord[],
    reported: readonly ReportedVm[],
    fleetId: string,
  ): Promise<{ changed: boolean; orphans: ReportedVm[] }> {
    const { store } = this.deps;
    const byId = new Map(reported.map((vm) => [vm.id, vm]));
    let changed = false;
    for (const vm of ours) {
      const next = heartbeatPatch(host.id, vm, byId.get(vm.id), fleetId);
      // Only if nothing wrote the VM since `ours` was read: a create's or a delete's answer is newer than this report.
      if (next && (await store.updateVmIfUnchanged(vm, next))) changed = true;
    }
    const known = new Set(ours.map((vm) => vm.id));
    const orphans: ReportedVm[] = [];
    for (const vm of reported) {
      if (vm.env_id === null || known.has(vm.id) || !madeByFleet(vm, fleetId)) continue;
      if (!(await store.findEnv(vm.env_id))) orphans.push(vm);
    }
    return { changed, orphans };
  }

  /** Deletes, on the host, VMs this fleet made for environments that are gone; true if any went. */
  private async deleteOrphans(host: HostRecord, orphans: readonly ReportedVm[]): Promise<boolean> {
    const { log } = this.deps;
    let deleted = false;
    for (const vm of orphans) {
      try {
        await this.deps.drivers.forHost(host).deleteVm(vm.id);
        log.info({ host: host.id, vm: vm.id, env: vm.env_id }, "Deleted a VM of an environment that no longer exists");
        deleted = true;
      } catch (err) {
        log.warn({ host: host.id, vm: vm.id, err: describeHostFailure(err) }, "Cannot delete an orphaned VM yet");
      }
    }
    return deleted;
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
