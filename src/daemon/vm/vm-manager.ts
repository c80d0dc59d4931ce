// The VM service the routes call: host groups and records, create and delete, calls to a VM's agent, power
// operations, tags, and the daemon's start and stop. Routes never touch QEMU, the agent or the store
// directly. The live-VM core is VmSupervisor; power operations are VmPower.
import { randomBytes } from "node:crypto";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { imageSizeMiB } from "../../image/index.ts";
import { allocateHostPorts } from "../../net/host-ports.ts";
import { randomMac, USER_NET } from "../../net/user-network.ts";
import type { AgentHealth, ExecSpec } from "../../protocol/agent.ts";
import { CorralError, ERROR_STATUS, isErrorCode, type ErrorCode } from "../../protocol/errors.ts";
import { assertHostgroupName, assertHostname } from "../../protocol/names.ts";
import { raceAbort } from "../../util/abort.ts";
import { crashPoint } from "../../util/crash-points.ts";
import { tailLines } from "../../util/tail.ts";
import { AgentError, type AgentClient, type AgentResponse } from "../agent/agent-client.ts";
import { ttstackGroup, type HostGroupConfig } from "../config.ts";
import { ExpiryReaper } from "./expiry-reaper.ts";
import { DEFAULT_FORWARD_ADDRESS } from "./launch-vm.ts";
import type { HostPressure } from "../admission.ts";
import { extendedExpiry, newSandboxLifetime } from "./lifetime-policy.ts";
import { vmPaths } from "./vm-paths.ts";
import { CommitStore } from "../commits/commit-store.ts";
import { VmCommits } from "./vm-commits.ts";
import { VmPower } from "./vm-power.ts";
import { isLive } from "../../protocol/vm-lifecycle.ts";
import type { NewVm, VmRecord } from "./vm-store.ts";
import { healthOf } from "./vm-condition.ts";
import { assertNotFrozen, VmSupervisor, type AgentReadyHook, type VmManagerDeps } from "./vm-supervisor.ts";
import type { HealthFields } from "../../protocol/vm-health.ts";
import type { NetworkPatchBody, VmNetworkDescription } from "../../protocol/net.ts";
import type { GroupNetworkInfo, NetworkInfo, NetworkManager } from "../../net/network-manager.ts";
import { overrideOfRecord, policyPatch, vmNetworkDescription } from "./vm-network.ts";
import type { PolicyOverride } from "../../net/policy.ts";

export type { AgentReadyHook, VmManagerDeps } from "./vm-supervisor.ts";

/** The network service of bridge and isolated host groups (absent: every group is user mode). */
export interface VmManagerNetwork {
  network?: NetworkManager;
}

export interface SandboxRequest {
  cpus?: number;
  ramBytes?: number;
  userdata?: string;
  sshKeys?: string[];
  /** A login user to create in the guest for the SSH keys. */
  importUser?: string;
  tags?: string[];
  persistent?: boolean;
  /** How long the sandbox lives (ms); absent: the group's default (see newSandboxLifetime). */
  lifetimeMs?: number;
  /** A static address from the group's pool (bridge mode; Slicer's `ip`). */
  ip?: string;
  /** The VM's own egress lists instead of its group's (bridge and isolated modes; Slicer's `network`). */
  networkPolicy?: PolicyOverride;
}

/** How a create is made for a client (see acknowledgeCreate and rollBackCreate). */
export interface CreateOptions {
  /** Aborted when the client is gone: the VM is not started, or its clone stops waiting, and it is removed. */
  signal?: AbortSignal;
}

/** A VM made through TTstack's agent API: named by the caller, sized per request, with forwarded ports. */
export interface ApiVmRequest {
  hostname: string;
  envId: string | null;
  image: string;
  cpus: number;
  ramBytes: number;
  /** MiB the guest's disk should have; an image bigger than that keeps its own size. */
  diskMiB: number;
  /** Guest TCP ports to forward from the daemon's address. */
  ports: number[];
  denyOutgoing: boolean;
  sshKeys: string[];
  /** Tags beside the environment's `env=ID` (a fleet controller's `fleet=ID`). */
  tags?: string[];
}

export type Readiness = "agent" | "userdata";

export interface NodeFilter {
  hostgroup?: string;
  tag?: string;
  tagPrefix?: string;
}

export interface TagChange {
  add?: string[];
  remove?: string[];
  replace?: string[];
}

export class VmManager {
  private readonly vms: VmSupervisor;
  /** pause, resume, shutdown, reboot, relaunch, suspend, restore. */
  readonly power: VmPower;
  /** commit a VM, fork a commit. */
  readonly commits: VmCommits;
  private readonly reaper: ExpiryReaper;

  constructor(private readonly deps: VmManagerDeps & VmManagerNetwork) {
    this.vms = new VmSupervisor(deps);
    // Whoever deletes a record (delete, rollback, recovery), its lease goes in the same transaction.
    const network = deps.network;
    if (network) deps.store.onDelete((hostname) => network.release(hostname));
    this.reaper = new ExpiryReaper({ store: deps.store, expire: (record, now) => this.expire(record, now), log: deps.log });
    this.power = new VmPower(this.vms, (name) => this.group(name));
    this.commits = new VmCommits(
      this.vms,
      deps.commits ?? new CommitStore(deps.stateDir),
      (name) => this.group(name),
      (group, fields) => this.newVm(group, "sandbox", { ...fields, acknowledged: false }),
      deps.templates,
    );
  }

  // ---- networking ----

  /** The VM's NIC and egress policy as GET /vm/HOST shows them (Slicer's `network`, with Corral's fields). */
  networkOf(record: VmRecord): VmNetworkDescription {
    return vmNetworkDescription(record, this.deps.network);
  }

  /**
   * Changes a VM's egress policy and deny_outgoing (PATCH /vm/HOST/network) under its lock: stored, then
   * applied to its live rules; if they cannot be applied the stored values go back. User-mode VMs take
   * theirs at start only.
   */
  async setNetworkPolicy(hostname: string, patch: NetworkPatchBody): Promise<VmNetworkDescription> {
    assertHostname(hostname);
    return this.vms.lock.run(hostname, async () => {
      const record = this.get(hostname);
      const network = this.deps.network;
      const group = network?.group(record.hostgroup);
      if (!network || !group) {
        if (patch.deny_outgoing !== undefined) {
          throw new CorralError(
            "conflict",
            `VM "${record.hostname}" uses user-mode networking, which takes deny_outgoing at start only: use a host group in bridge or isolated mode`,
          );
        }
        throw new CorralError(
          "invalid_request",
          `VM "${record.hostname}" uses user-mode networking, which has no egress lists: set ${this.networkField(record.hostgroup)}.mode to bridge or isolated`,
        );
      }
      const lists = policyPatch(record.networkPolicy, patch);
      const denyOutgoing = patch.deny_outgoing ?? record.denyOutgoing;
      const updated = this.deps.store.setNetworkPolicy(hostname, lists, denyOutgoing) ?? record;
      try {
        await network.applyPolicy(hostname, denyOutgoing);
      } catch (err) {
        this.deps.store.setNetworkPolicy(hostname, record.networkPolicy, record.denyOutgoing);
        await network.applyPolicy(hostname, record.denyOutgoing).catch(() => undefined);
        throw new CorralError("network_unavailable", `Cannot apply the new egress policy of VM "${hostname}": ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      this.deps.log.info({ vm: hostname, policy: lists, deny_outgoing: denyOutgoing }, "VM egress policy changed");
      return this.networkOf(updated);
    });
  }

  /** Bridge and isolated groups' network state for GET /info (empty when every group is user mode). */
  networkInfo(): NetworkInfo | undefined {
    return this.deps.network?.needed ? this.deps.network.info() : undefined;
  }

  /** A TAP-mode group's network state for GET /hostgroup; undefined for user-mode groups. */
  groupNetwork(hostgroup: string): GroupNetworkInfo | undefined {
    const group = this.deps.network?.group(hostgroup);
    return group ? this.deps.network?.groupInfo(group) : undefined;
  }

  /** `config.host_groups[i].network` of a group, for messages. */
  private networkField(hostgroup: string): string {
    const index = this.deps.config.hostGroups.findIndex((g) => g.name === hostgroup);
    return index >= 0 ? `config.host_groups[${index}].network` : `host group "${hostgroup}"'s network`;
  }

  /** Refuses a create's network fields that the group's mode does not take, before anything is made. */
  private checkNetworkRequest(group: HostGroupConfig, request: { ip?: string; networkPolicy?: PolicyOverride }): void {
    const mode = group.network.mode;
    if (request.ip !== undefined && mode !== "bridge") {
      const why = mode === "isolated" ? "isolated VMs get a /30 block each" : "user-mode VMs all have 10.0.2.15";
      throw new CorralError("invalid_request", `Cannot create a VM with "ip" in host group "${group.name}": ${why} (${this.networkField(group.name)}.mode is "${mode}")`);
    }
    if (request.networkPolicy !== undefined && mode === "user") {
      throw new CorralError(
        "invalid_request",
        `Cannot create a VM with a "network" policy in host group "${group.name}": its ${this.networkField(group.name)}.mode is "user" (bridge or isolated take egress lists)`,
      );
    }
    if (mode !== "user") {
      if (!this.deps.network)
        throw new CorralError("network_unavailable", `Host group "${group.name}" (network.mode ${mode}) is unavailable: this daemon was started without its network service`);
      this.deps.network.assertAvailable(group.name);
    }
  }

  /** In the insert's transaction: a lease for a VM of a TAP-mode group, its address and MAC on the record. */
  private leaseFor(record: VmRecord, ip: string | undefined): VmRecord {
    const lease = this.deps.network?.lease(record.hostgroup, record.hostname, record.mac, { ip });
    if (!lease) return record;
    this.deps.store.setAddress(record.hostname, lease.address, record.mac);
    return this.deps.store.get(record.hostname) as VmRecord;
  }

  // ---- host groups and records ----

  /** The configured groups and the TTstack API's group (see ttstackGroup). */
  groups(): readonly HostGroupConfig[] {
    const api = ttstackGroup(this.deps.config);
    return this.deps.config.hostGroups.includes(api) ? this.deps.config.hostGroups : [...this.deps.config.hostGroups, api];
  }

  /**
   * The groups `/hostgroup` lists, with their VM counts: the configured ones, and the TTstack API's group
   * only once it holds VMs, so that a Slicer client picking a group sees what its configuration declares.
   */
  listedGroups(): { group: HostGroupConfig; count: number }[] {
    return this.groups()
      .map((group) => ({ group, count: this.deps.store.listGroup(group.name).length }))
      .filter(({ group, count }) => count > 0 || this.deps.config.hostGroups.includes(group));
  }

  group(name: string): HostGroupConfig {
    assertHostgroupName(name);
    const group = this.groups().find((g) => g.name === name);
    if (!group) throw new CorralError("hostgroup_not_found", `Host group ${JSON.stringify(name)} does not exist`);
    return group;
  }

  list(filter: NodeFilter = {}): VmRecord[] {
    let records = filter.hostgroup ? this.deps.store.listGroup(filter.hostgroup) : this.deps.store.list();
    if (filter.tag !== undefined) records = records.filter((r) => r.tags.includes(filter.tag as string));
    if (filter.tagPrefix !== undefined) records = records.filter((r) => r.tags.some((t) => t.startsWith(filter.tagPrefix as string)));
    return records;
  }

  get(hostname: string): VmRecord {
    return this.vms.record(hostname);
  }

  /** What the VM is doing now (see healthOf): beside Slicer's status in every view. */
  healthOf(record: VmRecord): HealthFields {
    const runtime = this.vms.runtime(record.hostname);
    const live = runtime && runtime.incarnation === record.incarnation ? runtime : undefined;
    return healthOf(record, live, { stateDir: this.deps.stateDir });
  }

  /** The host's memory and disk as admission control sees them. */
  hostPressure(): HostPressure {
    return this.deps.admission.pressure();
  }

  /** Every VM that has a QEMU process, with its record (liveness checks, metrics). */
  liveVms(): ReturnType<VmSupervisor["live"]> {
    return this.vms.live();
  }

  /** When the VM's agent last answered a call, if it has since this daemon started. */
  lastAgentCall(hostname: string): Date | undefined {
    return this.vms.runtime(hostname)?.agent.lastCallAt;
  }

  /** Adds a step run whenever a VM's agent becomes ready (see AgentReadyHook). */
  onAgentReady(hook: AgentReadyHook): void {
    this.vms.onAgentReady(hook);
  }

  /** The agents of every VM that is running with its agent ready. */
  readyAgents(): { hostname: string; agent: AgentClient }[] {
    return this.vms.readyAgents();
  }

  /** Replaces, extends or trims a VM's tags; returns them after the change. */
  updateTags(hostname: string, change: TagChange): string[] {
    const record = this.get(hostname);
    let tags = change.replace ?? record.tags;
    if (change.add) tags = [...tags, ...change.add.filter((t) => !tags.includes(t))];
    if (change.remove) tags = tags.filter((t) => !change.remove?.includes(t));
    return this.deps.store.setTags(hostname, tags)?.tags ?? tags;
  }

  // ---- create and delete ----

  /**
   * Creates a sandbox in `groupName` and starts it; resolves once QEMU runs (the guest boots on). The VM is
   * unacknowledged until acknowledgeCreate: the caller answers its client, then acknowledges or rolls back.
   */
  async createSandbox(groupName: string, request: SandboxRequest, options: CreateOptions = {}): Promise<VmRecord> {
    if (this.vms.stopping.signal.aborted) throw new CorralError("unavailable", "The daemon is shutting down");
    const group = this.group(groupName);
    const cpus = request.cpus ?? group.vcpu;
    const ramBytes = request.ramBytes ?? group.ramBytes;
    if (cpus > group.vcpu) {
      throw new CorralError("resources_exceeded", `Cannot create a VM with ${cpus} vCPUs in host group "${group.name}": its limit is ${group.vcpu}`);
    }
    if (ramBytes > group.ramBytes) {
      throw new CorralError("resources_exceeded", `Cannot create a VM with ${ramBytes} bytes of RAM in host group "${group.name}": its limit is ${group.ramBytes}`);
    }
    const lifetimeMs = newSandboxLifetime(group, request.lifetimeMs);
    this.checkNetworkRequest(group, request);
    const image = await this.deps.images.resolve(group.image);
    // Admitted and recorded in one step (no await between): concurrent creates see each other's records.
    const reservation = this.vms.admit({ what: `a new VM in host group ${JSON.stringify(group.name)}`, group, ramBytes, priority: "user", joinsGroup: true });
    const record = this.vms.recordAdmitted(reservation, "the new VM's record", () =>
      this.deps.store.transaction(() =>
        this.leaseFor(
          this.deps.store.insertSandbox(
            this.newVm(group, "sandbox", {
              cpus,
              ramBytes,
              persistent: request.persistent ?? false,
              userdata: request.userdata ?? group.userdata ?? null,
              sshKeys: [...group.sshKeys, ...(request.sshKeys ?? [])],
              importUser: request.importUser ?? null,
              tags: request.tags ?? [],
              imageVersion: image.version,
              acknowledged: false,
              lifetimeMs,
              networkPolicy: overrideOfRecord(request.networkPolicy),
            }),
            group.count,
          ),
          request.ip,
        ),
      ),
    );
    return this.vms.lock.run(record.hostname, () => this.vms.launchHolding(record, reservation, { signal: options.signal }));
  }

  /**
   * Creates a VM in the TTstack group under the caller's name and starts it; resolves once QEMU runs. Its
   * disk and port map stay when it is stopped (it is persistent); each forwarded port gets a free host port.
   */
  async createApiVm(request: ApiVmRequest, options: CreateOptions = {}): Promise<VmRecord> {
    if (this.vms.stopping.signal.aborted) throw new CorralError("unavailable", "The daemon is shutting down");
    assertHostname(request.hostname);
    const group = ttstackGroup(this.deps.config);
    const image = await this.deps.images.resolve(request.image);
    const diskMiB = request.diskMiB > (await imageSizeMiB(image)) ? request.diskMiB : null;
    const ports = [...new Set(request.ports)];
    this.checkNetworkRequest(group, {});
    // TAP modes: DNAT from config.network.port_range, taken in the insert's transaction; user mode: hostfwd.
    const tapMode = group.network.mode !== "user";
    const hostPorts = tapMode ? [] : await allocateHostPorts(this.deps.forwardAddress ?? DEFAULT_FORWARD_ADDRESS, ports.length);
    const reservation = this.vms.admit({
      what: `VM ${JSON.stringify(request.hostname)} in host group ${JSON.stringify(group.name)}`,
      group,
      ramBytes: request.ramBytes,
      priority: "user",
      joinsGroup: true,
    });
    const portMapOf = (): { guest: number; host: number }[] =>
      tapMode && this.deps.network ? this.deps.network.allocatePorts(request.hostname, ports) : ports.map((guest, i) => ({ guest, host: hostPorts[i] as number }));
    const record = this.vms.recordAdmitted(reservation, `the record of VM ${JSON.stringify(request.hostname)}`, () =>
      this.deps.store.transaction(() =>
        this.leaseFor(
          this.deps.store.insertNamed(request.hostname, {
            ...this.newVm(group, "sandbox", {
              cpus: request.cpus,
              ramBytes: request.ramBytes,
              persistent: true,
              userdata: group.userdata ?? null,
              sshKeys: [...group.sshKeys, ...request.sshKeys],
              importUser: null,
              tags: [...(request.envId === null ? [] : [`env=${request.envId}`]), ...(request.tags ?? [])],
              imageVersion: image.version,
              acknowledged: false,
            }),
            image: request.image,
            envId: request.envId,
            diskMiB,
            portMap: portMapOf(),
            denyOutgoing: request.denyOutgoing,
          }),
          undefined,
        ),
      ),
    );
    return this.vms.lock.run(record.hostname, () => this.vms.launchHolding(record, reservation, { signal: options.signal }));
  }

  /**
   * The create that made `record` is being answered to its client: from now on the VM outlives a daemon
   * crash. Called synchronously as the answer is handed to the connection (see routes/client-create.ts); a
   * crash before this removes the VM at the next start. False if the VM is no longer the one that create made.
   */
  acknowledgeCreate(record: VmRecord): boolean {
    const marked = this.deps.store.acknowledge(record.hostname, record.createdAt);
    crashPoint("create.acknowledged");
    return marked;
  }

  /**
   * Undoes the create that made `record` because its client did not get the answer (the client left, the
   * answer could not be written, its wait failed): the VM goes, whatever it has become meanwhile, even if
   * the mark was set as the answer was handed to a connection that then failed.
   */
  async rollBackCreate(record: VmRecord, reason: unknown): Promise<void> {
    await this.vms.lock.run(record.hostname, async () => {
      const current = this.deps.store.get(record.hostname);
      if (!current || current.createdAt !== record.createdAt) return;
      await this.vms.rollBack(current, reason);
    });
  }

  // ---- lifetimes ----

  /**
   * Sets the VM to expire `lifetimeMs` from now (null: never), within its group's max_lifetime; returns the
   * record. Services cannot have a lifetime.
   */
  setLifetime(hostname: string, lifetimeMs: number | null): Promise<VmRecord> {
    assertHostname(hostname);
    return this.vms.lock.run(hostname, async () => {
      const record = this.get(hostname);
      const expiresAt = extendedExpiry(this.group(record.hostgroup), record, lifetimeMs, new Date());
      const updated = this.deps.store.setExpiry(hostname, expiresAt) ?? record;
      this.deps.log.info({ vm: hostname, expires_at: updated.expiresAt }, "VM lifetime set");
      return updated;
    });
  }

  /** Deletes an expired VM (the reaper's step), if it is still due when its lock is taken. */
  private async expire(due: VmRecord, now: Date): Promise<void> {
    await this.vms.lock.run(due.hostname, async () => {
      const current = this.deps.store.get(due.hostname);
      if (!current || current.expiresAt === null || Date.parse(current.expiresAt) > now.getTime()) return;
      await this.vms.remove(current);
      this.deps.metrics?.vmExpired(current.hostgroup);
      this.deps.log.info({ vm: current.hostname, expires_at: current.expiresAt }, "VM expired: deleted with its disk");
    });
  }

  private newVm(
    group: HostGroupConfig,
    kind: NewVm["kind"],
    fields: Pick<NewVm, "cpus" | "ramBytes" | "persistent" | "userdata" | "sshKeys" | "importUser" | "tags" | "imageVersion" | "acknowledged" | "lifetimeMs" | "networkPolicy">,
  ): NewVm {
    return {
      hostgroup: group.name,
      kind,
      image: group.image,
      ip: USER_NET.guestAddress,
      mac: randomMac(),
      accel: this.deps.accel.accel,
      machineId: randomBytes(16).toString("hex"),
      ...fields,
    };
  }

  /** Deletes a sandbox (services only with `force`): stops QEMU and removes its disk and record. */
  async deleteNode(groupName: string, hostname: string, options: { force?: boolean } = {}): Promise<{ diskRemoved: boolean }> {
    this.group(groupName);
    assertHostname(hostname);
    return this.vms.lock.run(hostname, async () => {
      const record = this.get(hostname);
      if (record.hostgroup !== groupName) {
        throw new CorralError("vm_not_found", `VM ${JSON.stringify(hostname)} is not in host group ${JSON.stringify(groupName)}`);
      }
      if (record.kind === "service" && !options.force) {
        throw new CorralError(
          "forbidden",
          `Cannot delete VM ${JSON.stringify(hostname)}: it is a service of host group "${groupName}" (change the daemon's configuration instead)`,
        );
      }
      await this.vms.remove(record);
      this.deps.log.info({ vm: hostname }, "VM deleted");
      return { diskRemoved: true };
    });
  }

  // ---- readiness and agent calls ----

  /** Resolves when the VM's agent answers (and, for "userdata", its userdata has finished). */
  async waitReady(hostname: string, until: Readiness, signal: AbortSignal): Promise<void> {
    const runtime = this.vms.runtime(hostname);
    if (!runtime) throw new CorralError("vm_not_running", `VM ${JSON.stringify(hostname)} is not running`);
    try {
      await raceAbort(runtime.readiness.whenSettled, signal, () => new CorralError("timeout", "Timed out waiting for the VM"));
      if (until === "agent") return;
      for (;;) {
        const health = await runtime.agent.health(signal);
        if (health.userdata_ran) return;
        await sleep(200, undefined, { signal });
      }
    } catch (err) {
      if (signal.aborted) throw new CorralError("timeout", `Timed out waiting for VM ${JSON.stringify(hostname)}`, { cause: err });
      throw new CorralError("engine_failed", `VM ${JSON.stringify(hostname)} stopped before its agent answered`, { cause: err });
    }
  }

  /**
   * Runs `call` against the VM's agent once it is ready (409 while paused or stopped). Errors the agent
   * answers with keep their status and code; a lost agent is 503.
   */
  async withAgent<T>(hostname: string, signal: AbortSignal, call: (agent: AgentClient) => Promise<T>): Promise<T> {
    const runtime = await this.vms.readyRuntime(hostname, signal);
    try {
      return await call(runtime.agent);
    } catch (err) {
      throw agentFailure(hostname, err);
    }
  }

  /** Agent health; `agent_unavailable` (503) until the agent answers, 409 when paused or stopped. */
  async health(hostname: string, signal: AbortSignal): Promise<AgentHealth> {
    const record = this.get(hostname);
    const runtime = this.vms.runtime(hostname);
    if (!runtime || !isLive(record.state)) {
      throw new CorralError("vm_not_running", `VM ${JSON.stringify(hostname)} is not running (it is ${record.state})`);
    }
    assertNotFrozen(runtime, this.deps.stateDir);
    if (record.state === "paused") throw new CorralError("vm_paused", `VM ${JSON.stringify(hostname)} is paused: resume it first`);
    if (!runtime.readiness.isReady) throw new CorralError("agent_unavailable", `The agent of VM ${JSON.stringify(hostname)} is not ready yet`);
    try {
      return await runtime.agent.health(signal);
    } catch (err) {
      throw agentFailure(hostname, err);
    }
  }

  exec(hostname: string, spec: ExecSpec, stdin: Readable | undefined, signal: AbortSignal): Promise<AgentResponse> {
    return this.withAgent(hostname, signal, (agent) => agent.exec(spec, stdin, signal));
  }

  async logs(hostname: string, lines: number): Promise<string> {
    this.get(hostname);
    // The serial console ends lines with CRLF; clients expect plain newlines.
    return (await tailLines(vmPaths(this.deps.stateDir, hostname).serialLog, lines)).replaceAll("\r\n", "\n");
  }

  // ---- daemon life ----

  /**
   * Recovers from the previous daemon (re-attaching running VMs, removing unacknowledged ones), applies the
   * expiries that passed meanwhile, then starts every group's services and the expiry reaper.
   */
  async start(): Promise<void> {
    await this.vms.recover();
    await this.reconcileNetwork();
    await this.reaper.sweep();
    this.reaper.start();
    for (const group of this.deps.config.hostGroups) {
      for (let index = 1; index <= group.count; index++) await this.ensureService(group, `${group.name}-${index}`);
    }
  }

  /**
   * After recovery (plan §2.7): VMs of TAP-mode groups that lack a lease get one (with a warning), then the
   * network re-attaches the live ones, rewrites the host tables and removes what belongs to no VM.
   */
  private async reconcileNetwork(): Promise<void> {
    const network = this.deps.network;
    if (!network?.needed) return;
    for (const record of this.deps.store.list()) {
      if (!network.group(record.hostgroup) || network.hasLease(record.hostname)) continue;
      try {
        this.deps.store.transaction(() => this.leaseFor(record, undefined));
        this.deps.log.warn({ vm: record.hostname }, "VM had no address lease: it got a new one");
      } catch (err) {
        this.deps.log.error({ vm: record.hostname, err }, "VM has no address lease and cannot get one");
      }
    }
    const live = this.vms
      .live()
      .flatMap(({ record }) =>
        record.pid === null
          ? []
          : [{ hostname: record.hostname, hostgroup: record.hostgroup, pid: record.pid, mac: record.mac, portMap: record.portMap, denyOutgoing: record.denyOutgoing }],
      );
    await network.reconcile(live, new Set(this.deps.store.list().map((r) => r.hostname)));
  }

  /** Graceful stop (see VmSupervisor.stopAll). */
  async stop(): Promise<void> {
    await this.reaper.stop();
    await this.vms.stopAll();
  }

  private async ensureService(group: HostGroupConfig, hostname: string): Promise<void> {
    await this.vms.lock.run(hostname, async () => {
      let record = this.deps.store.get(hostname);
      if (record && record.kind !== "service") {
        this.deps.log.error({ vm: hostname }, `Cannot start service "${hostname}": a sandbox has that name`);
        return;
      }
      if (record && (isLive(record.state) || record.state === "suspended")) return;
      if (!record) {
        const image = await this.deps.images.resolve(group.image);
        const insert = (): VmRecord =>
          this.deps.store.insertNamed(
            hostname,
            this.newVm(group, "service", {
              cpus: group.vcpu,
              ramBytes: group.ramBytes,
              persistent: group.persistent,
              userdata: group.userdata ?? null,
              sshKeys: [...group.sshKeys],
              importUser: null,
              tags: [],
              imageVersion: image.version,
            }),
          );
        try {
          record = this.deps.store.transaction(() => this.leaseFor(insert(), undefined));
        } catch (err) {
          this.deps.log.error({ vm: hostname, err }, "Service could not start");
          return;
        }
      }
      try {
        await this.vms.launch(record);
      } catch (err) {
        this.deps.log.error({ vm: hostname, err }, "Service could not start");
      }
    });
  }
}

/** Codes for the agent's 4xx answers whose own code is not in our catalogue, by status. */
const AGENT_STATUS_CODES: Record<number, ErrorCode> = {
  400: "invalid_request",
  404: "not_found",
  409: "conflict",
  410: "gone",
  413: "payload_too_large",
};

function agentFailure(hostname: string, err: unknown): CorralError {
  if (err instanceof CorralError) return err;
  if (err instanceof AgentError && err.status !== undefined && err.status >= 400 && err.status < 500) {
    const code = isErrorCode(err.code) && ERROR_STATUS[err.code] === err.status ? err.code : AGENT_STATUS_CODES[err.status];
    if (code) return new CorralError(code, err.message, { cause: err, status: err.status });
  }
  const detail = err instanceof Error ? err.message : String(err);
  return new CorralError("agent_unavailable", `The agent of VM ${JSON.stringify(hostname)} failed: ${detail}`, { cause: err });
}
