// The periodic liveness check of every running VM's agent: an HTTP/2 PING with a short deadline over the
// agent connection the VM already has, every `health_check.interval`. The agent's event loop answers it
// without a stream or a route: under TCG it costs the guest about 9 ms of QEMU's CPU, where a
// `GET /v1/health` cost 20 ms (bench/liveness.ts). An agent that misses `failures` checks in a row is
// `unresponsive` (a fork bomb, a stopped agent, a guest thrashing); the next answer makes it `ok` again. A
// VM whose agent answered any call since the last round is not asked: it just showed it is alive. No check
// is sent to a VM that is paused, frozen by its disk or still booting.
import type { HealthCheckConfig } from "../config.ts";
import type { Logger } from "../../util/log.ts";
import type { VmRecord } from "./vm-store.ts";
import type { VmRuntime } from "./vm-runtime.ts";

/** Checks in flight at once: a host with hundreds of VMs spreads them out rather than waking all together. */
const CONCURRENCY = 16;

export interface LivenessDeps {
  config: HealthCheckConfig;
  /** The VMs that have a QEMU process, with their records. */
  live(): { runtime: VmRuntime; record: VmRecord }[];
  log: Logger;
}

export class LivenessChecks {
  private timer: NodeJS.Timeout | undefined;
  private round: Promise<void> | undefined;
  private readonly checking = new WeakSet<VmRuntime>();
  private readonly stopped = new AbortController();

  constructor(private readonly deps: LivenessDeps) {}

  start(): void {
    if (this.deps.config.intervalMs === 0 || this.timer) return;
    this.timer = setInterval(() => {
      this.round ??= this.checkAll().finally(() => {
        this.round = undefined;
      });
    }, this.deps.config.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped.abort();
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.round;
  }

  /** One round over every running VM whose agent is ready (exported for tests that do not want to wait). */
  async checkAll(): Promise<void> {
    const due = this.deps
      .live()
      .filter(({ runtime, record }) => record.state === "running" && runtime.readiness.isReady && !runtime.condition.diskStop && !this.checking.has(runtime));
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < due.length && !this.stopped.signal.aborted) {
        const { runtime } = due[next++] as { runtime: VmRuntime };
        await this.check(runtime);
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, due.length) }, worker));
  }

  private async check(runtime: VmRuntime): Promise<void> {
    const { condition, agent } = runtime;
    const interval = this.deps.config.intervalMs;
    // Any answer within the last interval is proof enough, and costs the guest nothing more.
    if (agent.lastCallAt && Date.now() - agent.lastCallAt.getTime() < interval && (!condition.lastAnswer || agent.lastCallAt > condition.lastAnswer)) {
      this.answered(runtime, agent.lastCallAt);
      return;
    }
    this.checking.add(runtime);
    try {
      await agent.ping(AbortSignal.any([this.stopped.signal, AbortSignal.timeout(this.deps.config.timeoutMs)]));
      this.answered(runtime, new Date());
    } catch (err) {
      if (this.stopped.signal.aborted || !runtime.readiness.isReady || runtime.condition.diskStop) return;
      const before = condition.missed(this.deps.config.failures);
      if (before !== "unresponsive" && condition.agent === "unresponsive") {
        this.deps.log.warn({ vm: runtime.hostname, misses: condition.misses, err: (err as Error).message }, "VM agent is not answering its liveness checks: unresponsive");
      }
    } finally {
      this.checking.delete(runtime);
    }
  }

  private answered(runtime: VmRuntime, at: Date): void {
    const before = runtime.condition.answered(at);
    if (before === "unresponsive") this.deps.log.info({ vm: runtime.hostname }, "VM agent answers again: ok");
  }
}
