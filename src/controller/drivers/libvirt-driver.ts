// A libvirt daemon as a host, reached by its connection URI (`qemu:///system`, `qemu+ssh://user@host/system`)
// through libvirt's own client, `virsh` (libvirt/virsh.ts). Its domains are the host's VMs, named by their
// domain names; libvirt's units (KiB of memory, ns of CPU time, bytes of disk) are read here into the
// controller's (MiB). The five power actions are libvirt's: start, shutdown, reboot, destroy (forced stop),
// reset (forced reboot). Environments are not made on such a host: creating or deleting a VM there, a shell or
// a serial log are `unsupported_by_host`, naming the host and why.
import { stat } from "node:fs/promises";
import type { HttpResponse } from "../../sdk/transport.ts";
import type WebSocket from "ws";
import { CorralError, quote } from "../../protocol/errors.ts";
import type { ShellQuery } from "../../protocol/slicer.ts";
import type { CreateAgentVm, VmStats } from "../../protocol/ttstack-agent.ts";
import type { HostDriver } from "../host-driver.ts";
import type { HostReport, ReportedVm, ReportedVmDetail } from "../host-report.ts";
import { DomainXmlError, parseDomainXml, type DomainDefinition } from "./libvirt/domain-xml.ts";
import { Recent } from "./libvirt/recent.ts";
import { parseLibvirtUri, type LibvirtUri } from "./libvirt/uri.ts";
import { Virsh, type VirshOptions } from "./libvirt/virsh.ts";
import { DOMAIN_STATE, domainStateName, isActiveState, parseDomainList, parseDomStats, parseNodeInfo, parsePoolInfo, vmStatsOf, type DomainStats } from "./libvirt/virsh-output.ts";

export { parseLibvirtUri, type LibvirtUri, type LibvirtTransport } from "./libvirt/uri.ts";

/** Is `uri` a libvirt connection URI (a driver name and an optional transport: `qemu:`, `qemu+ssh:`, …)? */
export function isLibvirtUri(uri: string): boolean {
  return /^[a-z][a-z0-9]*(\+[a-z0-9]+)?:\/\//i.test(uri) && !/^https?:\/\//i.test(uri);
}

const KIB_PER_MIB = 1024;
const BYTES_PER_MIB = 1024 * 1024;
/** How long a graceful stop waits for the guest to power off before answering with the state it is in. */
const SHUTDOWN_WAIT_MS = 30_000;
const SHUTDOWN_POLL_MS = 500;
/** Where the local system daemon keeps a running domain's QEMU pid file: its mtime is when the domain started. */
const LOCAL_PID_DIR = "/run/libvirt/qemu";
/** How long answers are shared (see recent.ts): every domain's stats within one heartbeat, the rest longer. */
const STATS_SHARED_MS = 1_000;
const NODE_KEPT_MS = 60_000;
const POOLS_KEPT_MS = 30_000;
const UUIDS_KEPT_MS = 60_000;

/** What libvirt reads as a domain name and the controller passes to virsh: refused before virsh sees it. */
export function domainNameProblem(name: string): string | null {
  if (name.length === 0) return "it is empty";
  if (name.length > 200) return `it has ${name.length} characters (at most 200)`;
  if (name.includes("/")) return "it contains '/' (libvirt refuses it: it names a file of the daemon's)";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this refuses
  if (/[\0-\x1f\x7f]/.test(name)) return "it contains control characters";
  if (name.startsWith("-")) return "it starts with '-' (virsh would read it as an option)";
  return null;
}

export interface LibvirtDriverOptions extends VirshOptions {
  /** How long a graceful stop waits for the domain to shut off. */
  shutdownWaitMs?: number;
}

export class LibvirtDriver implements HostDriver {
  readonly kind = "libvirt" as const;
  private readonly target: LibvirtUri | { problem: string };
  private readonly virsh: Virsh | null;
  private readonly shutdownWaitMs: number;
  /** libvirt does not say when a domain was defined: when this driver first saw each one stands in. */
  private readonly firstSeen = new Map<string, string>();
  private readonly recent = new Recent();

  constructor(
    private readonly hostId: string,
    private readonly address: { uri: string },
    options: LibvirtDriverOptions = {},
  ) {
    this.target = parseLibvirtUri(address.uri);
    this.virsh = "problem" in this.target ? null : new Virsh(hostId, this.target.connectUri, options);
    this.shutdownWaitMs = options.shutdownWaitMs ?? SHUTDOWN_WAIT_MS;
  }

  private unsupported(what: string, why = "Corral does not make or remove domains there, nor reach their consoles"): CorralError {
    return new CorralError("unsupported_by_host", `Cannot ${what} on host ${quote(this.hostId)}: it is a libvirt daemon (${this.address.uri}); ${why}`);
  }

  private run(args: string[], domain?: string): Promise<string> {
    if (this.virsh === null) throw new CorralError("invalid_request", (this.target as { problem: string }).problem);
    return this.virsh.run(args, domain);
  }

  async close(): Promise<void> {}

  async info(): Promise<HostReport> {
    const [hostname, node, all, pools] = await Promise.all([
      this.recent.get("hostname", NODE_KEPT_MS, () => this.run(["hostname"])),
      this.recent.get("nodeinfo", NODE_KEPT_MS, () => this.run(["nodeinfo"])),
      this.allStats(),
      this.recent.get("pools", POOLS_KEPT_MS, () => this.storage()),
    ]);
    const node_ = parseNodeInfo(node);
    let cpuUsed = 0;
    let memUsedKiB = 0;
    for (const stats of all) {
      if (!isActiveState(stats.state)) continue;
      cpuUsed += stats.number("vcpu.current") ?? 0;
      memUsedKiB += stats.number("balloon.current") ?? stats.number("balloon.maximum") ?? 0;
    }
    return {
      id: this.hostId,
      hostname: hostname.trim(),
      cpu_total: node_.cpus,
      threads_per_core: node_.threadsPerCore,
      cpu_used: cpuUsed,
      mem_total: Math.floor(node_.memoryKiB / KIB_PER_MIB),
      mem_used: Math.ceil(memUsedKiB / KIB_PER_MIB),
      disk_total: Math.floor(pools.capacity / BYTES_PER_MIB),
      disk_used: Math.ceil(pools.allocation / BYTES_PER_MIB),
      vm_count: all.length,
      engines: ["qemu"],
      storage: "file",
      images: [],
    };
  }

  async vms(): Promise<ReportedVm[]> {
    const all = await this.allStats();
    let uuids = await this.uuids();
    // A domain defined since the list was read: read it again.
    if (all.some((stats) => !uuids.has(stats.name))) {
      this.recent.forget("uuids");
      uuids = await this.uuids();
    }
    const names = new Set(all.map((stats) => stats.name));
    for (const name of this.firstSeen.keys()) if (!names.has(name)) this.firstSeen.delete(name);
    return Promise.all(all.map((stats) => this.reported(stats, { uuid: uuids.get(stats.name) })));
  }

  async vm(id: string): Promise<ReportedVmDetail> {
    const { definition, stats } = await this.domain(id);
    const sizes = new Map(stats.blocks().map((b) => [b.name, b.capacity]));
    return {
      ...(await this.reported(stats, { uuid: definition.uuid, definition })),
      hardware: {
        disks: definition.disks.map((disk) => ({ ...disk, size_mib: Math.ceil((sizes.get(disk.target.dev) ?? 0) / BYTES_PER_MIB) })),
        networks: definition.networks,
      },
    };
  }

  async stats(id: string): Promise<VmStats> {
    return vmStatsOf(await this.domainStats(id));
  }

  async createVm(body: CreateAgentVm): Promise<ReportedVm> {
    throw this.unsupported(`create VM ${quote(body.vm_id)}`, "Corral places environments on Corral daemons and TTstack agents only");
  }

  async deleteVm(id: string): Promise<true> {
    throw this.unsupported(`delete VM ${quote(id)}`, "Corral does not undefine domains it did not make");
  }

  /** libvirt's `start`: a domain that runs already is 409 `conflict`, with libvirt's sentence. */
  async startVm(id: string): Promise<ReportedVm> {
    await this.act(["start", "--domain", this.checked(id)], id);
    return this.reported(await this.domainStats(id));
  }

  /**
   * `force`: libvirt's `destroy` (the process ends at once, Virtumancer's forceoff); else `shutdown` (the
   * guest is asked through ACPI), waited for until the domain is off or `shutdownWaitMs` passed: a guest that
   * ignores the request is answered as it is, still running.
   */
  async stopVm(id: string, options: { force?: boolean } = {}): Promise<ReportedVm> {
    const name = this.checked(id);
    await this.act([options.force ? "destroy" : "shutdown", "--domain", name], id);
    let stats = await this.domainStats(id);
    const deadline = Date.now() + this.shutdownWaitMs;
    while (isActiveState(stats.state) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, SHUTDOWN_POLL_MS));
      stats = await this.domainStats(id);
    }
    return this.reported(stats);
  }

  /** `force`: libvirt's `reset` (the machine's reset line, Virtumancer's forcereset); else `reboot` (through the guest). */
  async rebootVm(id: string, options: { force?: boolean } = {}): Promise<ReportedVm> {
    await this.act([options.force ? "reset" : "reboot", "--domain", this.checked(id)], id);
    return this.reported(await this.domainStats(id));
  }

  async openShell(name: string, _query: ShellQuery, _signal: AbortSignal): Promise<WebSocket> {
    throw this.unsupported(`open a shell in VM ${quote(name)}`, "its domains have no Corral guest agent");
  }

  async logs(name: string, _query: { lines?: number }, _signal: AbortSignal): Promise<HttpResponse> {
    throw this.unsupported(`read the serial log of VM ${quote(name)}`, "libvirt keeps a domain's console to itself");
  }

  /** `name`, once it is one the controller may hand to virsh (400 `invalid_name` otherwise). */
  private checked(name: string): string {
    const problem = domainNameProblem(name);
    if (problem !== null) throw new CorralError("invalid_name", `Cannot use ${quote(name)} as a libvirt domain name: ${problem}`);
    return name;
  }

  private allStats(): Promise<DomainStats[]> {
    // --nowait: a domain busy with a job (a migration, a save) gives what it can at once rather than holding
    // the host's whole report.
    return this.recent.get("stats", STATS_SHARED_MS, async () => parseDomStats(await this.run(["domstats", "--raw", "--state", "--balloon", "--vcpu", "--block", "--nowait"])));
  }

  /** Each domain's UUID by name (a UUID is fixed for as long as its domain is defined). */
  private uuids(): Promise<Map<string, string>> {
    return this.recent.get(
      "uuids",
      UUIDS_KEPT_MS,
      async () => new Map(parseDomainList(await this.run(["list", "--all", "--id", "--uuid", "--name"])).map((d) => [d.name, d.uuid])),
    );
  }

  /** Runs a power action; what every domain's stats said before it is stale after it. */
  private async act(args: string[], id: string): Promise<void> {
    try {
      await this.run(args, id);
    } finally {
      this.recent.forget("stats");
    }
  }

  private async domainStats(id: string): Promise<DomainStats> {
    const name = this.checked(id);
    const [stats] = parseDomStats(await this.run(["domstats", "--raw", "--state", "--cpu-total", "--balloon", "--vcpu", "--block", "--interface", "--", name], id));
    if (stats === undefined || stats.name !== name) throw new CorralError("host_bad_answer", `Host ${quote(this.hostId)} gave no statistics for domain ${quote(name)}`);
    return stats;
  }

  private async domain(id: string): Promise<{ definition: DomainDefinition; stats: DomainStats }> {
    const name = this.checked(id);
    const [xml, stats] = await Promise.all([this.run(["dumpxml", "--domain", name], id), this.domainStats(id)]);
    try {
      return { definition: parseDomainXml(xml), stats };
    } catch (err) {
      if (err instanceof DomainXmlError)
        throw new CorralError("host_bad_answer", `Host ${quote(this.hostId)} gave an unreadable XML for domain ${quote(name)}: ${err.message}`, { cause: err });
      throw err;
    }
  }

  /** Active storage pools' capacity and allocation, in bytes (0 when the host has none). */
  private async storage(): Promise<{ capacity: number; allocation: number }> {
    const names = (await this.run(["pool-list", "--name"]))
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "" && domainNameProblem(line) === null);
    const infos = await Promise.all(names.map((pool) => this.run(["pool-info", "--bytes", "--pool", pool]).then(parsePoolInfo, () => ({ capacity: 0, allocation: 0 }))));
    return infos.reduce((sum, info) => ({ capacity: sum.capacity + info.capacity, allocation: sum.allocation + info.allocation }), { capacity: 0, allocation: 0 });
  }

  /** A domain as the controller keeps VMs: its state in the controller's names, vCPUs, memory and disks in MiB. */
  private async reported(stats: DomainStats, extra: { uuid?: string | undefined; definition?: DomainDefinition } = {}): Promise<ReportedVm> {
    const state = stats.state;
    const maxKiB = stats.number("balloon.maximum") ?? extra.definition?.memoryKiB ?? 0;
    const disk = stats.blocks().reduce((sum, block) => sum + block.capacity, 0);
    const firstSeen = this.firstSeen.get(stats.name) ?? new Date().toISOString();
    this.firstSeen.set(stats.name, firstSeen);
    const vm: ReportedVm = {
      id: stats.name,
      env_id: null,
      image: "",
      engine: "qemu",
      cpu: stats.number("vcpu.current") ?? extra.definition?.vcpus ?? 0,
      mem: Math.ceil(maxKiB / KIB_PER_MIB),
      disk: Math.ceil(disk / BYTES_PER_MIB),
      ports: [],
      port_map: {},
      state: domainStateName(state),
      ip: "",
      created_at: firstSeen,
      last_error: state === DOMAIN_STATE.crashed ? "libvirt reports the domain crashed" : null,
    };
    const mac = extra.definition?.networks[0]?.mac.address;
    if (mac) vm.mac = mac;
    if (extra.uuid) vm.uuid = extra.uuid;
    const startedAt = isActiveState(state) ? await this.startedAt(stats.name) : null;
    if (startedAt !== undefined) vm.started_at = startedAt;
    return vm;
  }

  /**
   * When the domain's QEMU process started, where libvirt lets it be known: on this machine's system daemon,
   * the mtime of the pid file libvirt writes at start. libvirt's API has no such time for a remote host:
   * undefined there (the VM's uptime is not shown).
   */
  private async startedAt(name: string): Promise<string | undefined> {
    if ("problem" in this.target || (this.target.transport !== "local" && this.target.transport !== "unix") || this.target.path !== "/system") return undefined;
    const file = await stat(`${LOCAL_PID_DIR}/${name}.pid`).catch(() => undefined);
    return file?.mtime.toISOString();
  }
}
