// The controller's Prometheus metrics, in a registry of its own (several controllers may share a process in
// tests): the fleet as the store has it (hosts by kind and state, environments and VMs by state, read at each
// scrape so they are never stale), placements, heartbeats per host kind, HTTP latencies by route pattern, and
// Node's own (event-loop lag among them).
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { ENV_STATES } from "../protocol/env-lifecycle.ts";
import { FLEET_VM_STATES } from "../protocol/vm-states.ts";
import { statusClass, type ServedRequest } from "../http/request-timing.ts";
import type { StateCounts } from "./db/index.ts";
import { HOST_KINDS, type HostKind } from "./host-report.ts";

/** A host's state as the gauge counts it: a disconnected host (Virtumancer's disconnect) is neither online nor offline. */
const HOST_STATES = ["online", "offline", "disconnected"] as const;

/** How a heartbeat's question went: the host answered, or did not (an error, a timeout). */
export type HeartbeatOutcome = "answered" | "failed";

/** How a placement went: `placed`, or the error code that refused it (`no_capacity`, `conflict`, …). */
export type PlacementOutcome = string;

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class ControllerMetrics {
  readonly registry = new Registry();
  private readonly hosts: Gauge<"kind" | "state">;
  private readonly envs: Gauge<"state">;
  private readonly vms: Gauge<"state">;
  private readonly placements: Counter<"outcome">;
  private readonly placementSeconds: Histogram;
  private readonly heartbeatSeconds: Histogram<"kind" | "outcome">;
  private readonly requestSeconds: Histogram<"route" | "method" | "status_class">;

  /** `counts` is asked at each scrape (FleetStore.stateCounts). */
  constructor(private readonly counts: () => Promise<StateCounts>) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.hosts = new Gauge({
      name: "corral_controller_hosts",
      help: "Registered hosts by kind (corral, ttstack, libvirt) and state (online, offline, disconnected)",
      labelNames: ["kind", "state"],
      registers,
    });
    this.envs = new Gauge({ name: "corral_controller_envs", help: "Environments by lifecycle state", labelNames: ["state"], registers });
    this.vms = new Gauge({
      name: "corral_controller_vms",
      help: "The controller's VMs by state (the host's as last seen, or pending, error, lost, deleting)",
      labelNames: ["state"],
      registers,
    });
    this.placements = new Counter({
      name: "corral_controller_placements_total",
      help: "Environment placements by outcome: placed, or the error code that refused them (no_capacity, conflict, …)",
      labelNames: ["outcome"],
      registers,
    });
    this.placementSeconds = new Histogram({
      name: "corral_controller_placement_duration_seconds",
      help: "Placement of an environment's VMs on hosts, in the store's transaction (whatever its outcome)",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.heartbeatSeconds = new Histogram({
      name: "corral_controller_heartbeat_duration_seconds",
      help: "How long a host took to answer a heartbeat (its info and VM list), by host kind and outcome (answered, failed)",
      labelNames: ["kind", "outcome"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.requestSeconds = new Histogram({
      name: "corral_controller_http_request_duration_seconds",
      help: "HTTP request duration by the matched route's pattern, method and status class (2xx, 4xx, …)",
      labelNames: ["route", "method", "status_class"],
      buckets: LATENCY_BUCKETS,
      registers,
    });
  }

  /** The registry's text, with the fleet's gauges read from the store now. */
  async scrape(): Promise<string> {
    const counts = await this.counts();
    // Every known label value is set, zeros included, so a state that empties reads 0 rather than vanishing.
    this.hosts.reset();
    for (const kind of HOST_KINDS) for (const state of HOST_STATES) this.hosts.set({ kind, state }, 0);
    for (const row of counts.hosts) this.hosts.inc({ kind: row.kind, state: row.state }, row.count);
    setAll(this.envs, ENV_STATES, counts.envs);
    setAll(this.vms, FLEET_VM_STATES, counts.vms);
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  placed(outcome: PlacementOutcome, seconds: number): void {
    this.placements.inc({ outcome });
    this.placementSeconds.observe(seconds);
  }

  heartbeat(kind: HostKind, outcome: HeartbeatOutcome, seconds: number): void {
    this.heartbeatSeconds.observe({ kind, outcome }, seconds);
  }

  requestServed(served: ServedRequest): void {
    this.requestSeconds.observe({ route: served.route, method: served.method, status_class: statusClass(served.status) }, served.seconds);
  }
}

function setAll(gauge: Gauge<"state">, states: readonly string[], rows: readonly { state: string; count: number }[]): void {
  gauge.reset();
  for (const state of states) gauge.set({ state }, 0);
  for (const row of rows) gauge.inc({ state: row.state }, row.count);
}
