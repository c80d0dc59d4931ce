// The daemon's network service for bridge and isolated host groups: group set-up at start, leases, the NIC
// of each VM (AttachmentProvider; user-mode VMs and templates go to the base provider), the host tables
// rewritten whole from the live VMs, runtime policy changes, recovery's reconcile, the 5 s repair loop and
// what /info and /hostgroup show. One per daemon, built in daemon.ts.
import { networkInterfaces } from "node:os";
import { readFileSync } from "node:fs";
import { CorralError } from "../protocol/errors.ts";
import type { NicView } from "../protocol/net.ts";
import type { Logger } from "../util/log.ts";
import { Reverter } from "../util/reverter.ts";
import type { AttachmentProvider, AttachmentRequest, GuestNetwork, NetworkAttachment } from "./attachment.ts";
import { createBridgeAttachment } from "./bridge-attachment.ts";
import { probeCapabilities, type NetCapabilities } from "./capabilities.ts";
import { cidrContains, formatCidr, formatIpv4, parseIpv4 } from "./cidr.ts";
import { setUpGroups, type GroupInput, type GroupSetUp } from "./group-network.ts";
import type { HostAccess } from "./host-access.ts";
import { resolversOf } from "./host-isolation-rules.ts";
import { groupNetworkInfo, networkInfo, type GroupNetworkInfo, type NetworkInfo } from "./network-info.ts";
import { deleteStaleTables, tableCommentOf, warnForeignForwardDrop } from "./foreign-tables.ts";
import { deleteHostTablesScript, hostTablesScript, tableComment, type HostRulesInput } from "./host-rules.ts";
import type { IpamStore, Lease } from "./ipam-store.ts";
import { deleteLinksBatch, HostCommands, type LinkRunner } from "./link-commands.ts";
import { daemonTag, deviceAlias, deviceName, netTable, parseAlias, vethPrefix } from "./names.ts";
import type { EgressPolicy } from "./network-config.ts";
import { mergePolicy, type PolicyOverride } from "./policy.ts";

/** Interface 5 (isolated-attachment.ts): what the isolated attachment is made from. */
export interface IsolatedAttachmentInput {
  hostIfname: string;
  block: { network: number; gateway: number; address: number };
  mac: string;
  dns: readonly string[];
  policy: EgressPolicy;
  denyOutgoing: boolean;
  portMap: readonly { guest: number; host: number }[];
  vhost: boolean;
}

export interface IsolatedAttachmentLike extends NetworkAttachment {
  setPolicy(pid: number, policy: EgressPolicy, denyOutgoing: boolean): Promise<void>;
  /** What recovery finds in a running VM's namespace, and the rewrite of its tables (isolated-attachment.ts). */
  inspect?(pid: number): Promise<{ namespace: boolean; guard: string; policy: string }>;
  restoreRules?(pid: number): Promise<void>;
}

export type { GroupNetworkInfo, NetworkInfo } from "./network-info.ts";

export type IsolatedAttachmentFactory = (input: IsolatedAttachmentInput) => IsolatedAttachmentLike;

export interface NetworkManagerOptions {
  readonly stateDir: string;
  /** Every host group the daemon serves (the TTstack group included), with its index in config.host_groups. */
  readonly groups: readonly (GroupInput & { readonly dnsServers: readonly string[] })[];
  readonly hostIsolation: boolean;
  readonly hostAccess: readonly HostAccess[];
  /** config.network.port_range: host ports of DNAT'd port maps. */
  readonly portRange?: { readonly first: number; readonly last: number };
  readonly vhost?: "auto" | "on" | "off";
  readonly ipam: IpamStore;
  /** User-mode VMs and templates (engine's DefaultAttachments). */
  readonly base: AttachmentProvider;
  readonly log: Logger;
  /** E's createIsolatedAttachment; absent: isolated groups are unavailable, saying so. */
  readonly isolated?: IsolatedAttachmentFactory;
  /** The host's programs (contract tests: in a namespace of their own). */
  readonly runner?: LinkRunner;
  readonly caps?: NetCapabilities;
  /** The host's resolvers, for groups without dns_servers. */
  readonly resolvConf?: string;
  /** A lease taken at a VM's first start rather than at its create (a fork, a record from before leases). */
  readonly onLeased?: (owner: string, lease: Lease) => void;
  /** A VM's own egress lists (vms.network), read whenever its rules are written. */
  readonly overrideOf?: (hostname: string) => PolicyOverride | undefined;
}

/** A VM whose NIC is plumbed: its place in the host tables. */
interface LiveNic {
  readonly hostname: string;
  readonly pid: number;
  readonly lease: Lease;
  readonly group: GroupSetUp;
  readonly ifname: string;
  policy: EgressPolicy;
  denyOutgoing: boolean;
  readonly portMap: readonly { guest: number; host: number }[];
  readonly attachment: NetworkAttachment;
}

export const DEFAULT_PORT_RANGE = Object.freeze({ first: 20000, last: 29999 });

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export class NetworkManager implements AttachmentProvider {
  readonly tag: string;
  private readonly runner: LinkRunner;
  private readonly live = new Map<string, LiveNic>();
  private groups = new Map<string, GroupSetUp>();
  private vhost = false;
  private queued: Promise<void> | undefined;
  private chain: Promise<void> = Promise.resolve();
  private watchTimer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private lastComment: string | undefined;

  constructor(private readonly options: NetworkManagerOptions) {
    this.tag = daemonTag(options.stateDir);
    this.runner = options.runner ?? new HostCommands();
  }

  /** True when some group is in a TAP mode (else the manager only hands requests to the base). */
  get needed(): boolean {
    return this.options.groups.some((g) => g.network.mode !== "user");
  }

  /**
   * Group set-up (bridges, pinned subnets, states); throws when the start must be refused (a subnet
   * overlapping a foreign interface or another group). Then the (still empty) host tables.
   */
  async start(): Promise<void> {
    if (!this.needed) return;
    const caps = this.options.caps ?? probeCapabilities();
    const wanted = this.options.vhost ?? "auto";
    this.vhost = wanted === "on" || (wanted === "auto" && caps.vhostNet);
    this.groups = await setUpGroups(this.options.groups, {
      tag: this.tag,
      caps,
      ipam: this.options.ipam,
      runner: this.runner,
      log: this.options.log,
      isolatedBuilt: this.options.isolated !== undefined,
    });
    for (const group of this.groups.values()) {
      const dns = this.dnsOf(group.hostgroup, group.pool.slot(0).gateway);
      if (group.state === "ready" && dns.length === 1 && dns[0] === formatIpv4(group.pool.slot(0).gateway)) {
        // No DNS relay on the gateway yet: a host with only loopback resolvers (systemd-resolved) has none to give.
        this.options.log.warn(
          { hostgroup: group.hostgroup },
          `Host group "${group.hostgroup}" has no DNS server for its guests: this host's resolvers are all loopback addresses; set dns_servers on the group`,
        );
      }
    }
    if (this.anyReady()) {
      await deleteStaleTables(this.runner, this.tag, this.options.log);
      await this.applyTables();
      const subnets = [...this.groups.values()].filter((g) => g.state === "ready").map((g) => g.pool.subnet);
      await warnForeignForwardDrop(this.runner, subnets, this.options.log);
    }
  }

  /** Some bridge or isolated group could be set up: only then are there host tables to write. */
  private anyReady(): boolean {
    return [...this.groups.values()].some((g) => g.state === "ready");
  }

  group(name: string): GroupSetUp | undefined {
    return this.groups.get(name);
  }

  /** Throws 503 network_unavailable with the group's reason when its network could not be set up. */
  assertAvailable(hostgroup: string): void {
    const group = this.groups.get(hostgroup);
    if (group && group.state !== "ready") throw new CorralError("network_unavailable", group.reason ?? `Host group "${hostgroup}" has no network`);
    const configured = this.options.groups.find((g) => g.name === hostgroup);
    if (!group && configured && configured.network.mode !== "user") {
      throw new CorralError("network_unavailable", `Host group "${hostgroup}" (network.mode ${configured.network.mode}) is not set up: the daemon's network is not started`);
    }
  }

  /** A lease for a new VM of a TAP-mode group (in the caller's transaction); undefined for user-mode groups. */
  lease(hostgroup: string, owner: string, mac: string, options: { ip?: string; ownerKind?: "vm" | "pool" } = {}): Lease | undefined {
    const group = this.groups.get(hostgroup);
    if (!group) {
      if (options.ip !== undefined) throw new CorralError("invalid_request", `Host group "${hostgroup}" uses user-mode networking: "ip" is only for host groups in bridge mode`);
      return undefined;
    }
    this.assertAvailable(hostgroup);
    if (options.ip !== undefined && group.network.mode !== "bridge") {
      throw new CorralError("invalid_request", `Host group "${hostgroup}" is in isolated mode: isolated VMs get a /30 block each, "ip" cannot be chosen`);
    }
    return this.options.ipam.allocate(group.pool, { owner, ownerKind: options.ownerKind ?? "vm", mac, ip: options.ip });
  }

  /** A warm-pool clone handed out as `hostname`: its lease (taken with ownerKind "pool") is the VM's now. */
  handOut(poolOwner: string, hostname: string): void {
    this.options.ipam.rename(poolOwner, hostname);
    const nic = this.live.get(poolOwner);
    if (nic) {
      this.live.delete(poolOwner);
      this.live.set(hostname, { ...nic, hostname });
    }
  }

  hasLease(owner: string): boolean {
    return this.options.ipam.leaseOf(owner) !== undefined;
  }

  /** Host ports for a VM's port maps from config.network.port_range (TAP-mode groups). */
  allocatePorts(owner: string, guestPorts: readonly number[]): { guest: number; host: number }[] {
    return this.options.ipam.allocatePorts(owner, guestPorts, this.options.portRange ?? DEFAULT_PORT_RANGE).map((m) => ({ guest: m.guestPort, host: m.hostPort }));
  }

  /** The record's lease and NIC are gone with it: frees the lease and takes the VM out of the tables. */
  release(hostname: string): void {
    this.options.ipam.release(hostname);
    if (this.live.delete(hostname))
      void this.applyTables().catch((err: unknown) => this.options.log.error({ err, vm: hostname }, "Cannot take a deleted VM out of the host tables"));
  }

  private dnsOf(hostgroup: string, gateway: number): string[] {
    const configured = this.options.groups.find((g) => g.name === hostgroup)?.dnsServers ?? [];
    if (configured.length > 0) return [...configured];
    let text = "";
    try {
      text = readFileSync(this.options.resolvConf ?? "/etc/resolv.conf", "utf8");
    } catch {
      // no resolv.conf: the guest gets the gateway, which answers nothing (logged below)
    }
    const resolvers = resolversOf(text).filter((r) => !r.includes(":") && !r.startsWith("127."));
    return resolvers.length > 0 ? resolvers : [formatIpv4(gateway)];
  }

  /** Interface 1: bridge and isolated VMs here; user-mode VMs and every template to the base provider. */
  async attachmentFor(request: AttachmentRequest): Promise<NetworkAttachment> {
    const group = this.groups.get(request.hostgroup);
    if (!group || request.purpose === "template") return this.options.base.attachmentFor(request);
    this.assertAvailable(request.hostgroup);
    let lease = this.options.ipam.leaseOf(request.hostname);
    if (!lease) {
      lease = this.lease(request.hostgroup, request.hostname, request.mac);
      if (!lease) throw new CorralError("network_unavailable", `VM "${request.hostname}" has no address`);
      this.options.onLeased?.(request.hostname, lease);
    }
    const slot = group.pool.slot(lease.slot);
    const guest: GuestNetwork = {
      address: lease.address,
      prefixLength: slot.prefixLength,
      gateway: formatIpv4(slot.gateway),
      dns: this.dnsOf(request.hostgroup, slot.gateway),
      mac: request.mac,
    };
    const policy = mergePolicy(group.network.policy, this.options.overrideOf?.(request.hostname));
    const entry = (ifname: string, attachment: () => NetworkAttachment) => ({
      add: async (pid: number): Promise<void> => {
        this.live.set(request.hostname, {
          hostname: request.hostname,
          pid,
          lease,
          group,
          ifname,
          policy,
          denyOutgoing: request.denyOutgoing,
          portMap: request.portMap,
          attachment: attachment(),
        });
        await this.applyTables();
      },
      remove: async (): Promise<void> => {
        // By device, not by name: a pool clone handed out lives on under its new hostname.
        for (const [name, nic] of this.live) if (nic.lease.deviceId === lease.deviceId) this.live.delete(name);
        await this.applyTables();
      },
    });
    if (group.network.mode === "bridge") {
      const tap = deviceName(group.tapPrefix as string, lease.deviceId);
      const made: NetworkAttachment = createBridgeAttachment({
        tap,
        bridge: group.network.bridge,
        alias: deviceAlias(this.tag, request.hostgroup, lease.deviceId),
        guest,
        vhost: this.vhost,
        runner: this.runner,
        rules: entry(tap, () => made),
      });
      return made;
    }
    const factory = this.options.isolated;
    if (!factory || slot.blockNetwork === undefined)
      throw new CorralError("network_unavailable", `Host group "${request.hostgroup}" is in isolated mode, which is not built yet in this Corral`);
    const hostIfname = deviceName(vethPrefix(this.tag), lease.deviceId);
    const inner = factory({
      hostIfname,
      block: { network: slot.blockNetwork, gateway: slot.gateway, address: slot.address },
      mac: request.mac,
      dns: guest.dns,
      policy,
      denyOutgoing: request.denyOutgoing,
      portMap: request.portMap,
      vhost: this.vhost,
    });
    const rules = entry(hostIfname, () => inner);
    // The namespace side is isolated-attachment.ts's; the host side (DNAT, host_allow, masquerade, the
    // wall) is this manager's, added once the veth exists.
    const wrapped: IsolatedAttachmentLike = {
      mode: inner.mode,
      guest: inner.guest,
      netdev: inner.netdev,
      launchPrefix: inner.launchPrefix,
      needsPlumbing: inner.needsPlumbing,
      async plumb(pid: number, revert: Reverter, signal?: AbortSignal): Promise<void> {
        await inner.plumb(pid, revert, signal);
        revert.add(`host rules of ${hostIfname}`, () => rules.remove());
        await rules.add(pid);
      },
      view: () => inner.view(),
      setPolicy: (pid, policy, denyOutgoing) => inner.setPolicy(pid, policy, denyOutgoing),
      ...(inner.inspect ? { inspect: (pid: number) => inner.inspect!(pid) } : {}),
      ...(inner.restoreRules ? { restoreRules: (pid: number) => inner.restoreRules!(pid) } : {}),
    };
    return wrapped;
  }

  effectivePolicy(hostgroup: string, hostname: string): EgressPolicy | undefined {
    const group = this.groups.get(hostgroup);
    return group ? mergePolicy(group.network.policy, this.options.overrideOf?.(hostname)) : undefined;
  }

  /** The NIC of a VM of a TAP-mode group: the live one, else what its lease gives (a stopped VM). */
  nicOf(hostname: string, hostgroup: string, mac: string): NicView | undefined {
    const live = this.live.get(hostname);
    if (live) return live.attachment.view();
    const group = this.groups.get(hostgroup);
    const lease = this.options.ipam.leaseOf(hostname);
    if (!group || !lease) return undefined;
    const slot = group.pool.slot(lease.slot);
    const bridge = group.network.mode === "bridge" ? group.network.bridge : null;
    const targetDev = group.network.mode === "bridge" ? deviceName(group.tapPrefix as string, lease.deviceId) : deviceName(vethPrefix(this.tag), lease.deviceId);
    return { mode: group.network.mode, mac, address: lease.address, prefix_length: slot.prefixLength, gateway: formatIpv4(slot.gateway), bridge, target_dev: targetDev };
  }

  /** PATCH /vm/HOST/network on a live VM: the new policy takes effect in its rules at once. */
  async applyPolicy(hostname: string, denyOutgoing: boolean): Promise<void> {
    const nic = this.live.get(hostname);
    if (!nic) return;
    nic.policy = mergePolicy(nic.group.network.policy, this.options.overrideOf?.(hostname));
    nic.denyOutgoing = denyOutgoing;
    if (nic.group.network.mode === "isolated") await (nic.attachment as IsolatedAttachmentLike).setPolicy(nic.pid, nic.policy, denyOutgoing);
    await this.applyTables();
  }

  // ---- host tables ----

  private hostAddresses(): number[] {
    return Object.values(networkInterfaces())
      .flatMap((list) => list ?? [])
      .filter((i) => i.family === "IPv4")
      .map((i) => parseIpv4(i.address))
      .filter((a): a is number => a !== undefined);
  }

  /** The tables' content from the live VMs and the ready groups. */
  rulesInput(): HostRulesInput {
    const ready = [...this.groups.values()].filter((g) => g.state === "ready");
    const nics = [...this.live.values()].sort((a, b) => a.lease.deviceId - b.lease.deviceId);
    const hostAddresses = this.hostAddresses();
    return {
      tag: this.tag,
      stateDir: this.options.stateDir,
      hostIsolation: this.options.hostIsolation,
      hostAccess: this.options.hostAccess,
      bridges: ready.flatMap((g) => (g.network.mode === "bridge" ? [{ name: g.network.bridge, subnet: g.pool.subnet }] : [])),
      isolatedRanges: ready.flatMap((g) => (g.network.mode === "isolated" ? [g.pool.subnet] : [])),
      bridgeVms: nics
        .filter((n) => n.group.network.mode === "bridge")
        .map((n) => ({ deviceId: n.lease.deviceId, tap: n.ifname, address: n.lease.address, mac: n.attachment.guest.mac, policy: n.policy, denyOutgoing: n.denyOutgoing })),
      isolatedVms: nics
        .filter((n) => n.group.network.mode === "isolated")
        .map((n) => ({
          deviceId: n.lease.deviceId,
          address: n.lease.address,
          // Only an allow entry naming one address of this host opens the host (0.0.0.0/0 does not: Slicer).
          hostAllow: n.policy.allow
            .filter((e) => e.cidr.prefixLength === 32 && hostAddresses.some((h) => cidrContains(e.cidr, h)))
            .map((e) => ({ cidr: formatCidr(e.cidr), port: e.port })),
        })),
      portMaps: nics.flatMap((n) => n.portMap.map((m) => ({ hostPort: m.host, address: n.lease.address, guestPort: m.guest }))),
    };
  }

  private async loadScript(script: string): Promise<void> {
    await this.runner.nft(["-f", "-"], script);
  }

  /**
   * Rewrites both tables whole from the live VMs, one nft transaction. Calls made while a rewrite waits
   * share it; one made while a rewrite runs queues the next (which reads the state when it starts).
   */
  applyTables(): Promise<void> {
    // Without a ready group the daemon may lack the right to write tables at all (no CAP_NET_ADMIN).
    if (!this.anyReady()) return Promise.resolve();
    if (this.queued) return this.queued;
    const next = this.chain
      .catch(() => undefined)
      .then(async () => {
        this.queued = undefined;
        const input = this.rulesInput();
        await this.loadScript(hostTablesScript(input));
        this.lastComment = tableComment(input);
      });
    this.queued = next;
    this.chain = next;
    return next;
  }

  // ---- recovery and repair ----

  /**
   * After recoverVms (plan §2.7): live VMs of TAP-mode groups get their TAP back on the bridge and their
   * place in the tables (rewritten whole, so nothing stale survives); links with this daemon's alias and no
   * live owner are deleted; leases without a record are swept.
   */
  async reconcile(
    liveVms: readonly { hostname: string; hostgroup: string; pid: number; mac: string; portMap: readonly { guest: number; host: number }[]; denyOutgoing: boolean }[],
    owners: ReadonlySet<string>,
  ): Promise<void> {
    if (!this.needed) return;
    const swept = this.options.ipam.sweep(owners);
    if (swept.length > 0) this.options.log.warn({ leases: swept.map((l) => `${l.owner} ${l.address}`) }, "Released addresses that belonged to no VM");
    const keep = new Set<string>();
    for (const vm of liveVms) {
      const group = this.groups.get(vm.hostgroup);
      if (group?.state !== "ready") continue;
      try {
        const attachment = await this.attachmentFor({
          hostname: vm.hostname,
          hostgroup: vm.hostgroup,
          mac: vm.mac,
          portMap: vm.portMap,
          denyOutgoing: vm.denyOutgoing,
          purpose: "vm",
        });
        if (group.network.mode === "bridge") {
          // Idempotent: the TAP is already a port of the bridge unless someone took it off.
          const steps = new Reverter();
          await attachment.plumb(vm.pid, steps);
          steps.commit();
          keep.add((attachment.netdev as { ifname: string }).ifname);
        } else {
          // The VM's own tables live in its QEMU's namespace and survive the daemon; one removed or left
          // stale (a policy change the last daemon stored but did not apply) is written again.
          const isolated = attachment as IsolatedAttachmentLike;
          const found = await isolated.inspect?.(vm.pid);
          if (found?.namespace && (found.guard !== "current" || found.policy !== "current")) {
            await isolated.restoreRules?.(vm.pid);
            this.options.log.warn(
              { vm: vm.hostname, guard: found.guard, policy: found.policy },
              "Rewrote an isolated VM's own tables, which were not as this daemon would write them",
            );
          }
          const lease = this.options.ipam.leaseOf(vm.hostname) as Lease;
          this.live.set(vm.hostname, {
            hostname: vm.hostname,
            pid: vm.pid,
            lease,
            group,
            ifname: deviceName(vethPrefix(this.tag), lease.deviceId),
            policy: this.effectivePolicy(vm.hostgroup, vm.hostname) as EgressPolicy,
            denyOutgoing: vm.denyOutgoing,
            portMap: vm.portMap,
            attachment,
          });
          keep.add(deviceName(vethPrefix(this.tag), lease.deviceId));
        }
      } catch (err) {
        this.options.log.error({ err, vm: vm.hostname }, "Cannot re-attach a running VM's network");
      }
    }
    await this.applyTables();
    const links = await this.runner.links().catch(() => []);
    const debris = links.filter((l) => parseAlias(l.alias)?.tag === this.tag && parseAlias(l.alias)?.deviceId !== undefined && !keep.has(l.name)).map((l) => l.name);
    if (debris.length > 0) {
      await this.runner.ipBatch(deleteLinksBatch(debris), { force: true }).catch(() => undefined);
      this.options.log.warn({ links: debris }, "Deleted network devices that belonged to no running VM");
    }
  }

  /**
   * Every `intervalMs`: VMs whose QEMU is gone leave the tables, and tables that something removed or
   * changed (a firewall reload, `nft flush ruleset`) are written again, with an error in the log.
   */
  watch(intervalMs = 5000): void {
    if (!this.needed || this.watchTimer) return;
    this.watchTimer = setInterval(() => {
      this.checking ??= this.repair().finally(() => (this.checking = undefined));
    }, intervalMs);
    this.watchTimer.unref();
  }

  async repair(): Promise<void> {
    if (!this.anyReady()) return;
    try {
      let changed = false;
      for (const [hostname, nic] of this.live) {
        if (!pidAlive(nic.pid)) changed = this.live.delete(hostname) || changed;
      }
      const listed = await this.listedComment();
      if (changed || (this.lastComment !== undefined && listed !== this.lastComment)) {
        await this.applyTables();
        if (!changed)
          this.options.log.error(
            { table: netTable(this.tag) },
            "The host tables of bridge and isolated VMs were removed or changed (a firewall reload or nft flush ruleset?): they are back",
          );
      }
    } catch (err) {
      this.options.log.error({ err }, "Cannot put back the host tables of bridge and isolated VMs");
    }
  }

  private async listedComment(): Promise<string | undefined> {
    try {
      return tableCommentOf(await this.runner.nft(["list", "table", "inet", netTable(this.tag)]));
    } catch {
      return undefined;
    }
  }

  /** For GET /info. */
  info(): NetworkInfo {
    return networkInfo({ tag: this.tag, groups: [...this.groups.values()], ipam: this.options.ipam, vhost: this.vhost });
  }

  /** For GET /hostgroup. */
  groupInfo(group: GroupSetUp): GroupNetworkInfo {
    return groupNetworkInfo(group, this.options.ipam);
  }

  /** Graceful stop: the loop ends; tables stay for VMs that outlive the daemon (persistent ones are stopped by then). */
  async stop(options: { removeTables?: boolean } = {}): Promise<void> {
    clearInterval(this.watchTimer);
    this.watchTimer = undefined;
    await this.checking;
    await this.chain.catch(() => undefined);
    if (options.removeTables) await this.loadScript(deleteHostTablesScript(this.tag)).catch(() => undefined);
  }
}
