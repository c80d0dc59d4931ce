// What the daemon knows about a live VM beyond its lifecycle state: whether the engine stopped its vCPUs
// because of its disk (learned from the machine's disk-error event, or its run state after a daemon restart), and
// whether its agent answers the periodic liveness check. Kept per QEMU process, never stored: QEMU itself
// remembers why it stopped, and an agent's liveness is only worth what the last check said.
import type { DiskError, RunState } from "../../engine/index.ts";
import type { HealthFields, VmHealth } from "../../protocol/vm-health.ts";
import { isLive } from "../../protocol/vm-lifecycle.ts";
import type { VmRecord } from "./vm-store.ts";

export interface DiskStop {
  kind: "disk_full" | "io_error";
  /** QEMU's words: "No space left on device", ... */
  reason: string;
  since: Date;
}

export type AgentLiveness = "unknown" | "ok" | "unresponsive";

export class VmCondition {
  /** Set while QEMU holds the vCPUs stopped on a disk error. */
  diskStop: DiskStop | undefined;
  agent: AgentLiveness = "unknown";
  /** Liveness checks missed in a row. */
  misses = 0;
  /** When `agent` last changed. */
  agentSince: Date | undefined;
  /** When the agent last answered a liveness check. */
  lastAnswer: Date | undefined;

  /** QEMU reported a disk error that stopped the vCPUs. */
  stoppedByDisk(event: Pick<DiskError, "nospace" | "reason">, now = new Date()): DiskStop {
    this.diskStop = { kind: event.nospace ? "disk_full" : "io_error", reason: event.reason, since: this.diskStop?.since ?? now };
    return this.diskStop;
  }

  /** The vCPUs run again (the machine's resumed event). */
  resumed(): void {
    this.diskStop = undefined;
  }

  /**
   * What the machine says now (a daemon re-attaching after a restart has missed the events): a disk error
   * that stopped the vCPUs, and whether it was a full disk.
   */
  fromRunState(status: Pick<RunState, "diskError">, now = new Date()): void {
    if (!status.diskError) {
      this.diskStop = undefined;
      return;
    }
    const { nospace } = status.diskError;
    this.stoppedByDisk({ nospace, reason: nospace ? "No space left on device" : "a disk request failed" }, now);
  }

  /** A liveness check (or any agent call) was answered. */
  answered(now = new Date()): AgentLiveness {
    const before = this.agent;
    this.misses = 0;
    this.lastAnswer = now;
    this.setAgent("ok", now);
    return before;
  }

  /** A liveness check got no answer in time; `failures` in a row make the agent unresponsive. */
  missed(failures: number, now = new Date()): AgentLiveness {
    const before = this.agent;
    this.misses++;
    if (this.misses >= failures) this.setAgent("unresponsive", now);
    return before;
  }

  /** The agent is being (re)connected: what the last checks said no longer holds. */
  agentRestarting(): void {
    this.agent = "unknown";
    this.misses = 0;
    this.agentSince = undefined;
  }

  private setAgent(state: AgentLiveness, now: Date): void {
    if (this.agent === state) return;
    this.agent = state;
    this.agentSince = now;
  }
}

/** The live facts `healthOf` needs about a VM; absent when no QEMU process runs for it. */
export interface LiveFacts {
  condition: VmCondition;
  /** The agent answered and took the VM's identity (see readiness.ts). */
  readiness: { isReady: boolean };
}

/** The directory whose filesystem a disk-full detail points at. */
export interface HealthContext {
  stateDir: string;
}

/**
 * The VM's health from its record and what the daemon sees live. A disk stop wins over everything (it is
 * why nothing else answers); then a pause; then the agent: not yet ready, unresponsive, or ok.
 */
export function healthOf(record: Pick<VmRecord, "hostname" | "state" | "lastError" | "updatedAt">, live: LiveFacts | undefined, context: HealthContext): HealthFields {
  if (!live || !isLive(record.state)) {
    if (record.state === "creating") return { health: "starting" };
    const fields: HealthFields = { health: "stopped" };
    if (record.state === "failed" && record.lastError) fields.health_detail = record.lastError;
    return fields;
  }
  const stop = live.condition.diskStop;
  if (stop) {
    const detail =
      stop.kind === "disk_full"
        ? `QEMU stopped VM ${JSON.stringify(record.hostname)}: the host cannot store what it writes to its disk (${stop.reason}); free space in ${context.stateDir}, then POST /vm/${record.hostname}/resume`
        : `QEMU stopped VM ${JSON.stringify(record.hostname)} on a disk error (${stop.reason}); POST /vm/${record.hostname}/resume retries it`;
    return { health: stop.kind, health_detail: detail, health_since: stop.since.toISOString() };
  }
  if (record.state === "paused") return { health: "paused", health_since: record.updatedAt };
  if (!live.readiness.isReady) return { health: "starting" };
  const { agent, agentSince, lastAnswer } = live.condition;
  if (agent === "unresponsive") {
    const last = lastAnswer ? `since ${lastAnswer.toISOString()}` : "since it was connected";
    const fields: HealthFields = {
      health: "unresponsive",
      health_detail: `The guest agent of VM ${JSON.stringify(record.hostname)} has not answered its liveness checks ${last}: the guest may be overloaded or wedged`,
    };
    if (agentSince) fields.health_since = agentSince.toISOString();
    return fields;
  }
  const fields: HealthFields = { health: "ok" };
  if (agentSince) fields.health_since = agentSince.toISOString();
  return fields;
}

/** Counts of VMs by health, for metrics. */
export function countHealth(healths: readonly VmHealth[]): Record<VmHealth, number> {
  const counts: Record<VmHealth, number> = { starting: 0, ok: 0, unresponsive: 0, disk_full: 0, io_error: 0, paused: 0, stopped: 0 };
  for (const h of healths) counts[h]++;
  return counts;
}
