// The agent's background jobs by id. Jobs live here, not in any request or host connection, so they
// outlive both; a job stays (with its log) until the host removes it. Memory is bounded: a limited number
// of jobs, and their rings together at most a share of the guest's RAM.
import { kernelRandomBytes } from "../random.ts";
import { totalmem } from "node:os";
import type { ExecSpec } from "../../protocol/agent.ts";
import { isExecId } from "../../protocol/jobs.ts";
import { AgentRouteError } from "../http.ts";
import { BackgroundJob } from "./background-job.ts";

export interface JobLimits {
  maxJobs: number;
  /** The rings of all kept jobs together. */
  maxRingBytes: number;
}

export function defaultLimits(): JobLimits {
  return { maxJobs: 256, maxRingBytes: Math.max(16 * 1024 * 1024, Math.floor(totalmem() / 4)) };
}

/** Removed ids are remembered (answering 410 rather than 404) up to this many. */
const REMEMBERED_REMOVALS = 4096;

export class JobRegistry {
  private readonly jobs = new Map<string, BackgroundJob>();
  private readonly removed = new Set<string>();
  /** Ring bytes of launches still starting, so concurrent launches cannot overshoot the limit together. */
  private starting = 0;

  constructor(private readonly limits: JobLimits = defaultLimits()) {}

  async launch(spec: ExecSpec, ringBytes: number): Promise<BackgroundJob> {
    const held = [...this.jobs.values()].reduce((sum, job) => sum + job.ring.capacity, this.starting);
    if (this.jobs.size >= this.limits.maxJobs || held + ringBytes > this.limits.maxRingBytes) {
      throw new AgentRouteError(
        409,
        "conflict",
        `Cannot start another background job: ${this.jobs.size} jobs hold ${held} bytes of logs (limits: ${this.limits.maxJobs} jobs, ${this.limits.maxRingBytes} bytes); remove finished jobs first`,
      );
    }
    this.starting += ringBytes;
    try {
      const job = await BackgroundJob.start(this.newId(), spec, ringBytes);
      this.jobs.set(job.id, job);
      return job;
    } finally {
      this.starting -= ringBytes;
    }
  }

  list(): BackgroundJob[] {
    return [...this.jobs.values()];
  }

  /** The job with this id: 400 for a malformed id, 410 once removed, 404 if it never existed. */
  get(id: string): BackgroundJob {
    if (!isExecId(id)) throw new AgentRouteError(400, "invalid_name", `Invalid exec id ${JSON.stringify(id)}`);
    const job = this.jobs.get(id);
    if (job) return job;
    if (this.removed.has(id)) throw new AgentRouteError(410, "gone", `Background exec ${JSON.stringify(id)} was removed`);
    throw new AgentRouteError(404, "exec_not_found", `Background exec ${JSON.stringify(id)} does not exist`);
  }

  /** Kills the job if it still runs and forgets it and its log. */
  remove(id: string): void {
    const job = this.get(id);
    job.dispose();
    this.jobs.delete(id);
    this.removed.add(id);
    if (this.removed.size > REMEMBERED_REMOVALS) this.removed.delete(this.removed.values().next().value as string);
  }

  private newId(): string {
    for (;;) {
      const id = `ex_${kernelRandomBytes(8).toString("hex")}`;
      if (!this.jobs.has(id) && !this.removed.has(id)) return id;
    }
  }
}
