// Admission control: whether the host can take one more VM, decided before anything is made for it. A
// create is refused when its host group is at `max_vms`, when the host's memory would not hold the VM (what
// the kernel reports as MemAvailable, minus `admission.memory_reserve_mb` kept for the host, minus what VMs
// admitted but still starting may yet take), or when the state directory is short of space. The check and
// the reservation happen in one synchronous step, so concurrent creates cannot all pass the same check.
//
// A VM that runs counts through MemAvailable for what it really uses (memory is overcommitted, as on any
// KVM host); while it starts it is counted for all it may take, since the kernel does not know that yet.
// Background work (warm-pool refills, template builds) must leave room for one more VM of its group, so it
// can never take the last slot a user's create would have had.
import { readFileSync, statfsSync } from "node:fs";
import { CorralError } from "../protocol/errors.ts";
import type { HostPressure } from "../protocol/slicer.ts";
import type { AdmissionConfig, HostGroupConfig } from "./config.ts";

export type { HostPressure } from "../protocol/slicer.ts";

const MiB = 1024 * 1024;

/** What a VM costs beyond its RAM: QEMU itself, its device model and TCG's translation cache. */
export const QEMU_OVERHEAD_BYTES = 64 * MiB;

/** Retry-After for refusals that pass by themselves (VMs finish starting, others are deleted). */
const MEMORY_RETRY_SECONDS = 5;
const GROUP_RETRY_SECONDS = 30;

export type AdmissionPriority = "user" | "background";

export interface AdmissionRequest {
  /** Names the VM and its group in messages: `VM "sbox-3" of host group "sbox"`, `a new VM in host group "sbox"`. */
  what: string;
  group: HostGroupConfig;
  ramBytes: number;
  priority: AdmissionPriority;
  /** The VM becomes one of the group's (a create, a relaunch): the group's `max_vms` applies. */
  joinsGroup: boolean;
  /** Bytes the state directory must have free beyond the configured minimum (a template's RAM file). */
  extraDiskBytes?: number;
}

/** Memory held for an admitted VM until it has started (or failed to); release is idempotent. */
export interface Reservation {
  readonly bytes: number;
  release(): void;
}

export interface AdmissionDeps {
  config: AdmissionConfig;
  stateDir: string;
  /** VMs of the group that hold a QEMU process or are being made (they count against `max_vms`). */
  activeInGroup(group: string): number;
  /** Bytes the kernel could give to new work (MemAvailable); read at each decision. */
  memAvailable?: () => number;
  /** Bytes free for the daemon on the state directory's filesystem; read at each decision. */
  freeDisk?: () => number;
  /** Told about each refusal (metrics). */
  onRefused?: (code: "hostgroup_full" | "insufficient_memory" | "insufficient_storage", priority: AdmissionPriority) => void;
}

/** MemAvailable from /proc/meminfo, in bytes. */
export function readMemAvailable(file = "/proc/meminfo"): number {
  const match = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync(file, "utf8"));
  if (!match) throw new Error(`${file} has no MemAvailable line`);
  return Number(match[1]) * 1024;
}

/** Bytes an unprivileged writer may still use on the filesystem holding `dir`. */
export function freeBytes(dir: string): number {
  const stats = statfsSync(dir);
  return stats.bavail * stats.bsize;
}

function mib(bytes: number): string {
  return `${Math.floor(bytes / MiB)} MiB`;
}

export class Admission {
  private readonly held = new Set<Reservation>();
  private readonly memAvailable: () => number;
  private readonly freeDisk: () => number;

  constructor(private readonly deps: AdmissionDeps) {
    this.memAvailable = deps.memAvailable ?? (() => readMemAvailable());
    this.freeDisk = deps.freeDisk ?? (() => freeBytes(deps.stateDir));
  }

  /** Bytes held for VMs that are still starting. */
  get startingBytes(): number {
    let total = 0;
    for (const r of this.held) total += r.bytes;
    return total;
  }

  /**
   * Admits the VM or throws: 429 `hostgroup_full` or `insufficient_memory` (with Retry-After), 507
   * `insufficient_storage`. Hold the reservation until the VM has started, then release it.
   */
  admit(request: AdmissionRequest): Reservation {
    const refusal = this.check(request);
    if (refusal) {
      this.deps.onRefused?.(refusal.code as "hostgroup_full" | "insufficient_memory" | "insufficient_storage", request.priority);
      throw refusal;
    }
    return this.reserve(request.ramBytes + QEMU_OVERHEAD_BYTES);
  }

  /** Like admit, but answers the refusal instead of throwing it (background work skips and logs). */
  tryAdmit(request: AdmissionRequest): { reservation: Reservation } | { refused: CorralError } {
    try {
      return { reservation: this.admit(request) };
    } catch (err) {
      if (err instanceof CorralError) return { refused: err };
      throw err;
    }
  }

  pressure(): HostPressure {
    const available = this.memAvailable();
    const free = this.freeDisk();
    return {
      memory_available_bytes: available,
      memory_reserve_bytes: this.deps.config.memoryReserveBytes,
      memory_starting_bytes: this.startingBytes,
      memory_pressure: available < this.deps.config.memoryReserveBytes,
      state_dir_free_bytes: free,
      min_free_disk_bytes: this.deps.config.minFreeDiskBytes,
      disk_pressure: free < this.deps.config.minFreeDiskBytes,
    };
  }

  private check(request: AdmissionRequest): CorralError | undefined {
    const { group } = request;
    if (request.joinsGroup && group.maxVms !== undefined) {
      const active = this.deps.activeInGroup(group.name);
      if (active >= group.maxVms) {
        return new CorralError(
          "hostgroup_full",
          `Cannot start ${request.what}: the group is full (${active} VMs running or starting, max_vms is ${group.maxVms}); delete one or retry later`,
          { retryAfterSeconds: GROUP_RETRY_SECONDS },
        );
      }
    }
    const { minFreeDiskBytes, memoryReserveBytes } = this.deps.config;
    const diskNeeded = minFreeDiskBytes + (request.extraDiskBytes ?? 0);
    const free = this.freeDisk();
    if (free < diskNeeded) {
      const extra = request.extraDiskBytes ? ` plus ${mib(request.extraDiskBytes)} for its RAM file` : "";
      return new CorralError(
        "insufficient_storage",
        `Cannot start ${request.what}: the state directory ${this.deps.stateDir} has ${mib(free)} free, less than the ${mib(minFreeDiskBytes)} kept for VMs' disks (admission.min_free_disk_mb)${extra}; free space there`,
      );
    }
    const need = request.ramBytes + QEMU_OVERHEAD_BYTES;
    // Background work leaves room for one more VM of its group: it never takes a user's last slot.
    const headroom = request.priority === "background" ? group.ramBytes + QEMU_OVERHEAD_BYTES : 0;
    const available = this.memAvailable();
    const starting = this.startingBytes;
    const left = available - memoryReserveBytes - starting;
    if (need + headroom > left) {
      const forOthers = headroom > 0 ? `, and background work leaves ${mib(headroom)} for a VM of the group` : "";
      return new CorralError(
        "insufficient_memory",
        `Cannot start ${request.what}: it may take ${mib(need)} (${mib(request.ramBytes)} of RAM and ${mib(QEMU_OVERHEAD_BYTES)} for QEMU), ` +
          `the host has ${mib(available)} available, ${mib(memoryReserveBytes)} kept for the host (admission.memory_reserve_mb) and ${mib(starting)} held by VMs still starting, ` +
          `leaving ${mib(Math.max(0, left))}${forOthers}`,
        { retryAfterSeconds: MEMORY_RETRY_SECONDS },
      );
    }
    return undefined;
  }

  private reserve(bytes: number): Reservation {
    const held = this.held;
    const reservation: Reservation = {
      bytes,
      release() {
        held.delete(reservation);
      },
    };
    held.add(reservation);
    return reservation;
  }
}
