// What virsh prints, read into values: `domstats --raw` (one block of key=value lines per domain: state, CPU
// time, balloon, vCPUs, block and net counters), `list --all --id --uuid --name`, `nodeinfo`, `pool-info
// --bytes`, and a domain's live numbers in Virtumancer's VmStats shape. Pure: text in, values out. Units as
// libvirt gives them: memory in KiB, CPU time in ns, block capacities and counters in bytes.
import type { VmStats } from "../../../protocol/ttstack-agent.ts";
import type { VmState } from "../../../protocol/vm-lifecycle.ts";

/** libvirt's virDomainState numbers. */
export const DOMAIN_STATE = { nostate: 0, running: 1, blocked: 2, paused: 3, shutdown: 4, shutoff: 5, crashed: 6, pmsuspended: 7 } as const;

/**
 * A domain state in the controller's vocabulary (the daemon's VM states, which libvirtState() turns back into
 * libvirt's numbers for Virtumancer's wire): blocked (waiting on the host) is running, shutting down is
 * stopping, crashed is failed, suspended to the guest's memory is suspended.
 */
export function domainStateName(state: number): VmState {
  switch (state) {
    case DOMAIN_STATE.running:
    case DOMAIN_STATE.blocked:
      return "running";
    case DOMAIN_STATE.paused:
      return "paused";
    case DOMAIN_STATE.shutdown:
      return "stopping";
    case DOMAIN_STATE.crashed:
      return "failed";
    case DOMAIN_STATE.pmsuspended:
      return "suspended";
    case DOMAIN_STATE.nostate:
      return "creating";
    default:
      return "stopped";
  }
}

/** Has the domain a QEMU process (libvirt's "active")? */
export function isActiveState(state: number): boolean {
  return state !== DOMAIN_STATE.shutoff && state !== DOMAIN_STATE.crashed && state !== DOMAIN_STATE.nostate;
}

/** One domain's `domstats --raw` fields. */
export class DomainStats {
  constructor(
    readonly name: string,
    readonly fields: ReadonlyMap<string, string>,
  ) {}

  number(key: string): number | undefined {
    const value = this.fields.get(key);
    if (value === undefined || !/^-?\d+(\.\d+)?$/.test(value)) return undefined;
    return Number(value);
  }

  get state(): number {
    return this.number("state.state") ?? DOMAIN_STATE.nostate;
  }

  /** The block devices: target name, capacity and counters (counters only while the domain runs). */
  blocks(): { name: string; capacity: number; readBytes: number; writeBytes: number }[] {
    return this.indexed("block").map((i) => ({
      name: this.fields.get(`block.${i}.name`) ?? "",
      capacity: this.number(`block.${i}.capacity`) ?? 0,
      readBytes: this.number(`block.${i}.rd.bytes`) ?? 0,
      writeBytes: this.number(`block.${i}.wr.bytes`) ?? 0,
    }));
  }

  /** The NICs libvirt can count (those with a host device: not user-mode ones). */
  nets(): { name: string; rxBytes: number; txBytes: number }[] {
    return this.indexed("net")
      .filter((i) => this.fields.has(`net.${i}.name`))
      .map((i) => ({ name: this.fields.get(`net.${i}.name`) ?? "", rxBytes: this.number(`net.${i}.rx.bytes`) ?? 0, txBytes: this.number(`net.${i}.tx.bytes`) ?? 0 }));
  }

  private indexed(group: string): number[] {
    const count = Math.min(this.number(`${group}.count`) ?? 0, 1024);
    return Array.from({ length: count }, (_, i) => i);
  }
}

/** `virsh domstats --raw` (every domain, or the one named): a DomainStats per `Domain: 'NAME'` block. */
export function parseDomStats(text: string): DomainStats[] {
  const out: DomainStats[] = [];
  let fields: Map<string, string> | null = null;
  for (const line of text.split("\n")) {
    const header = /^Domain: '(.*)'\s*$/.exec(line);
    if (header) {
      fields = new Map();
      out.push(new DomainStats(header[1] ?? "", fields));
      continue;
    }
    const eq = line.indexOf("=");
    if (fields === null || eq < 0) continue;
    fields.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim());
  }
  return out;
}

/**
 * A domain's live numbers as Virtumancer's poller sends them: its state, memory in use (what the guest's
 * balloon driver says it uses when it reports, else what it is given), its most, vCPUs, CPU time in ns, and the
 * byte counters of its disks and of the NICs libvirt can count. A domain without a process has zeros and no
 * counters, as Virtumancer's connector answers for it.
 */
export function vmStatsOf(stats: DomainStats): VmStats {
  const state = stats.state;
  const maxKiB = stats.number("balloon.maximum") ?? 0;
  const vcpu = stats.number("vcpu.current") ?? stats.number("vcpu.maximum") ?? 0;
  if (!isActiveState(state)) return { state, memory: 0, max_mem: maxKiB, vcpu, cpu_time: 0, disk_stats: [], net_stats: [] };
  const available = stats.number("balloon.available");
  const unused = stats.number("balloon.unused");
  const memory = available !== undefined && unused !== undefined ? available - unused : (stats.number("balloon.current") ?? maxKiB);
  return {
    state,
    memory: Math.max(0, Math.floor(memory)),
    max_mem: maxKiB,
    vcpu,
    cpu_time: Math.floor(stats.number("cpu.time") ?? 0),
    disk_stats: stats.blocks().map((b) => ({ device: b.name, read_bytes: b.readBytes, write_bytes: b.writeBytes })),
    net_stats: stats.nets().map((n) => ({ device: n.name, read_bytes: n.rxBytes, write_bytes: n.txBytes })),
  };
}

export interface ListedDomain {
  uuid: string;
  /** libvirt's domain id; null when the domain does not run. */
  id: number | null;
  name: string;
}

/** `virsh list --all --id --uuid --name`: "UUID ID NAME" per line, ID "-" for a domain that does not run. */
export function parseDomainList(text: string): ListedDomain[] {
  const out: ListedDomain[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*([0-9a-f-]{36})\s+(-|\d+)\s+(.+?)\s*$/i.exec(line);
    if (m) out.push({ uuid: m[1] ?? "", id: m[2] === "-" ? null : Number(m[2]), name: m[3] ?? "" });
  }
  return out;
}

export interface NodeInfo {
  cpus: number;
  threadsPerCore: number;
  memoryKiB: number;
}

/** `virsh nodeinfo`: "CPU(s):  2", "Thread(s) per core:  1", "Memory size:  24683784 KiB". */
export function parseNodeInfo(text: string): NodeInfo {
  const field = (label: string): number => {
    const m = new RegExp(`^${label.replace(/[()]/g, "\\$&")}:\\s*(\\d+)`, "m").exec(text);
    return m ? Number(m[1]) : 0;
  };
  return { cpus: field("CPU(s)"), threadsPerCore: Math.max(1, field("Thread(s) per core")), memoryKiB: field("Memory size") };
}

/** `virsh pool-info --bytes NAME`: its capacity and allocation in bytes (0 when it does not say). */
export function parsePoolInfo(text: string): { capacity: number; allocation: number } {
  const field = (label: string): number => Number(new RegExp(`^${label}:\\s*(\\d+)`, "m").exec(text)?.[1] ?? 0);
  return { capacity: field("Capacity"), allocation: field("Allocation") };
}
