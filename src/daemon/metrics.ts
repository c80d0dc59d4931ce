// The daemon's Prometheus metrics, in a registry of its own (several daemons may share a process in tests).
import { freemem, loadavg, totalmem } from "node:os";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { ksmPagesSharing } from "../engine/index.ts";
import type { VmHealth } from "../protocol/vm-health.ts";
import type { HostPressure } from "./admission.ts";
import type { VmState } from "../protocol/vm-lifecycle.ts";

/** x86-64's and arm64's usual base page: KSM merges base pages. */
const PAGE_BYTES = 4096;

export type LaunchOutcome = "started" | "cloned" | "failed";

export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly launches: Counter<"hostgroup" | "outcome">;
  private readonly expiries: Counter<"hostgroup">;
  private readonly rollbacks: Counter<"hostgroup">;
  private readonly requests: Counter<"method" | "route" | "status">;
  private readonly durations: Histogram<"method" | "route">;
  private readonly refusals: Counter<"code" | "priority">;

  /** `countByState` is read at each scrape, so the gauges are never stale. */
  constructor(countByState: () => Partial<Record<VmState, number>>) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.launches = new Counter({ name: "corral_vm_launch_total", help: "QEMU launches (boot, relaunch, restore) by outcome", labelNames: ["hostgroup", "outcome"], registers });
    this.expiries = new Counter({ name: "corral_vm_expired_total", help: "VMs deleted because their lifetime ended", labelNames: ["hostgroup"], registers });
    this.rollbacks = new Counter({
      name: "corral_vm_create_rolled_back_total",
      help: "Creates undone before they were answered (the client left, the answer could not be written, the wait failed): VMs removed",
      labelNames: ["hostgroup"],
      registers,
    });
    this.requests = new Counter({
      name: "corral_api_requests_total",
      help: "API requests by method, route template and status",
      labelNames: ["method", "route", "status"],
      registers,
    });
    this.durations = new Histogram({
      name: "corral_api_request_duration_seconds",
      help: "API request duration by method and route template",
      labelNames: ["method", "route"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    new Gauge({
      name: "corral_vm_running",
      help: "VMs whose QEMU process runs (booting, running, paused, suspending, stopping)",
      registers,
      collect() {
        const counts = countByState();
        this.set((counts.booting ?? 0) + (counts.running ?? 0) + (counts.paused ?? 0) + (counts.suspending ?? 0) + (counts.stopping ?? 0));
      },
    });
    new Gauge({
      name: "corral_vms",
      help: "VMs by lifecycle state",
      labelNames: ["state"],
      registers,
      collect() {
        this.reset();
        for (const [state, count] of Object.entries(countByState())) this.set({ state }, count ?? 0);
      },
    });
    const load = (index: number, name: string): Gauge =>
      new Gauge({
        name,
        help: `Host load average over ${[1, 5, 15][index]} minutes`,
        registers,
        collect() {
          this.set(loadavg()[index] ?? 0);
        },
      });
    load(0, "corral_host_load1");
    load(1, "corral_host_load5");
    load(2, "corral_host_load15");
    new Gauge({
      name: "corral_host_memory_total_bytes",
      help: "Host memory",
      registers,
      collect() {
        this.set(totalmem());
      },
    });
    new Gauge({
      name: "corral_host_memory_available_bytes",
      help: "Host memory available",
      registers,
      collect() {
        this.set(freemem());
      },
    });
    this.refusals = new Counter({
      name: "corral_admission_refused_total",
      help: "VM starts refused by admission control, by code and priority (user, background)",
      labelNames: ["code", "priority"],
      registers,
    });
  }

  /** Gauges read from the live daemon at each scrape: VMs by health, and the host's memory and disk pressure. */
  observe(sources: { healthCounts: () => Record<VmHealth, number>; pressure: () => HostPressure }): void {
    const registers = [this.registry];
    new Gauge({
      name: "corral_vm_health",
      help: "VMs by health (starting, ok, unresponsive, disk_full, io_error, paused, stopped)",
      labelNames: ["health"],
      registers,
      collect() {
        for (const [health, count] of Object.entries(sources.healthCounts())) this.set({ health }, count);
      },
    });
    const pressure = (name: string, help: string, pick: (p: HostPressure) => number | boolean): Gauge =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(Number(pick(sources.pressure())));
        },
      });
    pressure("corral_host_memory_starting_bytes", "Memory held by admission control for VMs still starting", (p) => p.memory_starting_bytes);
    pressure("corral_host_memory_reserve_bytes", "Host memory admission control keeps for the host (admission.memory_reserve_mb)", (p) => p.memory_reserve_bytes);
    pressure("corral_host_memory_pressure", "1 when MemAvailable is below the reserve", (p) => p.memory_pressure);
    pressure("corral_state_dir_free_bytes", "Free space on the state directory's filesystem", (p) => p.state_dir_free_bytes);
    pressure("corral_host_disk_pressure", "1 when the state directory has less free space than creates need (admission.min_free_disk_mb)", (p) => p.disk_pressure);
    new Gauge({
      name: "corral_host_ksm_sharing_bytes",
      help: "Memory KSM saves on this host: pages_sharing of /sys/kernel/mm/ksm times the page size (every process's, 0 without KSM; see config ksm)",
      registers,
      collect() {
        this.set((ksmPagesSharing() ?? 0) * PAGE_BYTES);
      },
    });
  }

  admissionRefused(code: string, priority: string): void {
    this.refusals.inc({ code, priority });
  }

  vmLaunched(hostgroup: string, outcome: LaunchOutcome): void {
    this.launches.inc({ hostgroup, outcome });
  }

  vmExpired(hostgroup: string): void {
    this.expiries.inc({ hostgroup });
  }

  createRolledBack(hostgroup: string): void {
    this.rollbacks.inc({ hostgroup });
  }

  requestServed(method: string, route: string, status: number, seconds: number): void {
    this.requests.inc({ method, route, status: String(status) });
    this.durations.observe({ method, route }, seconds);
  }
}
