// Choosing a host for each VM of an environment: a pure function of the hosts (their last report and what
// the controller already reserved on them) and the request. Best fit, so that large hosts stay free for
// large VMs; one request may span hosts. When a VM fits nowhere, the reason says why each kind of host failed.
// Only hosts that make VMs through the agent API (Corral daemons, TTstack agents) take environments: a libvirt
// daemon's domains are its own, and its driver cannot create one (host-driver.ts).
import type { HostState } from "../../protocol/controller.ts";
import type { HostKind, HostReport } from "../host-report.ts";
import type { Amounts } from "./records.ts";

export interface PlacementHost {
  id: string;
  /** Absent: a host that takes environments (a record from before kinds, a test's). */
  kind?: HostKind;
  state: HostState;
  /** The host's last report; null until it first answered. */
  info: Pick<HostReport, "cpu_total" | "mem_total" | "disk_total" | "engines" | "images"> | null;
  reserved: Amounts;
}

export interface PlacementSpec {
  cpu: number;
  /** MiB. */
  mem: number;
  /** MiB. */
  disk: number;
  image: string;
  engine: string;
}

/** How much may be reserved per unit a host has: vCPUs are shared, memory and disk are not. */
export type Overcommit = Amounts;

export const DEFAULT_OVERCOMMIT: Readonly<Overcommit> = Object.freeze({ cpu: 4, mem: 1, disk: 1 });

/** `hostIds[i]` takes `specs[i]`. */
export type Placement = { ok: true; hostIds: string[] } | { ok: false; reason: string };

/** Chooses a host per VM: `placeVms` with the controller's overcommit ratios. */
export type PlaceFn = (hosts: PlacementHost[], specs: PlacementSpec[]) => Placement;

/** One create's VMs and how they are placed. */
export interface PlacementRequest {
  specs: readonly PlacementSpec[];
  place: PlaceFn;
}

const RESOURCES = ["cpu", "mem", "disk"] as const;
type Resource = (typeof RESOURCES)[number];

/** Why a host cannot take a VM, in the order the reason lists them. */
type Refusal = Resource | "image" | "engine" | "unreported" | "offline" | "kind";

/** The kinds of host that environments are placed on. */
export function takesEnvironments(kind: HostKind | undefined): boolean {
  return kind !== "libvirt";
}

interface Candidate {
  id: string;
  capacity: Amounts;
  free: Amounts;
}

export function placeVms(hosts: readonly PlacementHost[], specs: readonly PlacementSpec[], overcommit: Overcommit = DEFAULT_OVERCOMMIT): Placement {
  // What the request's earlier VMs took, by host: the only state a placement keeps. Every create runs this over
  // every host (1,000 in bench/controller-scale.ts), so the search allocates nothing per host; the candidates
  // with their free room are built only to say why a VM fits nowhere.
  const taken = new Map<string, Amounts>();
  const hostIds: string[] = [];
  for (const [index, spec] of specs.entries()) {
    const chosen = bestFit(hosts, taken, spec, overcommit);
    if (chosen === undefined) return { ok: false, reason: refusalReason(hosts, candidatesOf(hosts, taken, overcommit), spec, index) };
    const sum = taken.get(chosen) ?? { cpu: 0, mem: 0, disk: 0 };
    taken.set(chosen, { cpu: sum.cpu + spec.cpu, mem: sum.mem + spec.mem, disk: sum.disk + spec.disk });
    hostIds.push(chosen);
  }
  return { ok: true, hostIds };
}

/**
 * Places several creates one after the other on the same hosts, each on the room the earlier ones left (the
 * creates FleetStore places in one transaction); `[i]` is `requests[i]`'s. One that fits nowhere is refused
 * alone: the others are placed as if it had not been asked.
 */
export function placeInTurn(hosts: readonly PlacementHost[], requests: readonly PlacementRequest[]): Placement[] {
  if (requests.length === 1) {
    const [request] = requests as [PlacementRequest];
    return [request.place([...hosts], [...request.specs])];
  }
  const current = [...hosts];
  const at = new Map(current.map((host, i) => [host.id, i]));
  return requests.map(({ specs, place }) => {
    const placement = place(current, [...specs]);
    if (!placement.ok) return placement;
    for (const [i, hostId] of placement.hostIds.entries()) {
      const index = at.get(hostId);
      const host = index === undefined ? undefined : current[index];
      const spec = specs[i];
      if (index === undefined || host === undefined || spec === undefined) continue;
      current[index] = { ...host, reserved: { cpu: host.reserved.cpu + spec.cpu, mem: host.reserved.mem + spec.mem, disk: host.reserved.disk + spec.disk } };
    }
    return placement;
  });
}

/** Each host that takes environments, is online and reported, with its capacity and what is free on it now. */
function candidatesOf(hosts: readonly PlacementHost[], taken: ReadonlyMap<string, Amounts>, overcommit: Overcommit): Map<string, Candidate> {
  const candidates = new Map<string, Candidate>();
  for (const host of hosts) {
    if (!takesEnvironments(host.kind) || host.state !== "online" || host.info === null) continue;
    const capacity = {
      cpu: Math.floor(host.info.cpu_total * overcommit.cpu),
      mem: Math.floor(host.info.mem_total * overcommit.mem),
      disk: Math.floor(host.info.disk_total * overcommit.disk),
    };
    const took = taken.get(host.id) ?? { cpu: 0, mem: 0, disk: 0 };
    const free = { cpu: capacity.cpu - host.reserved.cpu - took.cpu, mem: capacity.mem - host.reserved.mem - took.mem, disk: capacity.disk - host.reserved.disk - took.disk };
    candidates.set(host.id, { id: host.id, capacity, free });
  }
  return candidates;
}

function refusal(host: PlacementHost, candidate: Candidate | undefined, spec: PlacementSpec): Refusal | undefined {
  if (!takesEnvironments(host.kind)) return "kind";
  if (host.state !== "online") return "offline";
  if (host.info === null || candidate === undefined) return "unreported";
  if (!host.info.engines.includes(spec.engine)) return "engine";
  // Docker's images are Docker's, not in the host's image list (as TTstack's scheduler has it, scheduler.rs:35-36).
  if (spec.engine !== "docker" && !host.info.images.includes(spec.image)) return "image";
  return RESOURCES.find((r) => spec[r] > candidate.free[r]);
}

/**
 * The id of the host that the VM leaves with the least free room (each resource as a share of the host's
 * capacity; ties to the smaller id), among those `refusal` would not refuse: the same tests, inline.
 */
function bestFit(hosts: readonly PlacementHost[], taken: ReadonlyMap<string, Amounts>, spec: PlacementSpec, overcommit: Overcommit): string | undefined {
  let bestId: string | undefined;
  let bestLeft = 0;
  for (const host of hosts) {
    const info = host.info;
    if (info === null || host.state !== "online" || !takesEnvironments(host.kind)) continue;
    const took = taken.get(host.id);
    const cpuCap = Math.floor(info.cpu_total * overcommit.cpu);
    const memCap = Math.floor(info.mem_total * overcommit.mem);
    const diskCap = Math.floor(info.disk_total * overcommit.disk);
    const cpuLeft = cpuCap - host.reserved.cpu - (took?.cpu ?? 0) - spec.cpu;
    const memLeft = memCap - host.reserved.mem - (took?.mem ?? 0) - spec.mem;
    const diskLeft = diskCap - host.reserved.disk - (took?.disk ?? 0) - spec.disk;
    if (cpuLeft < 0 || memLeft < 0 || diskLeft < 0) continue;
    if (!info.engines.includes(spec.engine) || (spec.engine !== "docker" && !info.images.includes(spec.image))) continue;
    const left = (cpuCap > 0 ? cpuLeft / cpuCap : 0) + (memCap > 0 ? memLeft / memCap : 0) + (diskCap > 0 ? diskLeft / diskCap : 0);
    if (bestId === undefined || left < bestLeft || (left === bestLeft && host.id < bestId)) {
      bestId = host.id;
      bestLeft = left;
    }
  }
  return bestId;
}

const RESOURCE_NAMES: Record<Resource, string> = { cpu: "CPU", mem: "memory", disk: "disk" };
const RESOURCE_UNITS: Record<Resource, string> = { cpu: "", mem: " MiB", disk: " MiB" };

function refusalReason(hosts: readonly PlacementHost[], candidates: Map<string, Candidate>, spec: PlacementSpec, index: number): string {
  const asked = `VM ${index + 1} (cpu ${spec.cpu}, mem ${spec.mem} MiB, disk ${spec.disk} MiB, image ${JSON.stringify(spec.image)}, engine ${JSON.stringify(spec.engine)})`;
  if (hosts.length === 0) return `No host can take ${asked}: no hosts are registered`;

  const byRefusal = new Map<Refusal, PlacementHost[]>();
  for (const host of hosts) {
    const why = refusal(host, candidates.get(host.id), spec);
    if (why === undefined) continue; // cannot happen: this VM fits no host
    byRefusal.set(why, [...(byRefusal.get(why) ?? []), host]);
  }
  const order: Refusal[] = ["cpu", "mem", "disk", "image", "engine", "unreported", "offline", "kind"];
  const parts = order.flatMap((why) => {
    const refused = byRefusal.get(why);
    if (refused === undefined) return [];
    const n = refused.length;
    const online = `${n} online ${n === 1 ? "host" : "hosts"}`;
    const lack = n === 1 ? "lacks" : "lack";
    switch (why) {
      case "offline":
        return [`${n} ${n === 1 ? "host is" : "hosts are"} offline`];
      case "kind":
        return [`${n} ${n === 1 ? "host is a libvirt daemon, which takes" : "hosts are libvirt daemons, which take"} no environments`];
      case "unreported":
        return [`${online} ${n === 1 ? "has" : "have"} not reported ${n === 1 ? "its" : "their"} resources yet`];
      case "engine":
        return [`${online} ${lack} engine ${JSON.stringify(spec.engine)}`];
      case "image":
        return [`${online} ${lack} image ${JSON.stringify(spec.image)}`];
      default: {
        const mostFree = Math.max(0, ...refused.map((h) => candidates.get(h.id)?.free[why] ?? 0));
        return [`${online} ${lack} ${RESOURCE_NAMES[why]} (at most ${mostFree}${RESOURCE_UNITS[why]} free)`];
      }
    }
  });
  return `No host can take ${asked}: ${parts.join(", ")}`;
}
