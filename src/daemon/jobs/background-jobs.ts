// Background exec, the daemon's part: jobs live in each VM's agent (so they outlive requests and daemon
// restarts); this service checks what clients ask, then relays it to the right agent. The agent's 404/410
// answers come back as they are.
import type { ClientHttp2Stream } from "node:http2";
import type { ExecSpec } from "../../protocol/agent.ts";
import { CorralError } from "../../protocol/errors.ts";
import {
  DEFAULT_KILL_GRACE_MS,
  DEFAULT_RING_BYTES,
  JOB_AGENT_PATHS,
  MAX_RING_BYTES,
  MIN_RING_BYTES,
  assertExecId,
  parseSignal,
  type BackgroundInfo,
  type BackgroundLaunch,
  type JobKillRequest,
  type JobLaunchRequest,
  type KillResult,
  type Reaped,
  type WaitExit,
} from "../../protocol/jobs.ts";
import type { VmManager } from "../vm/vm-manager.ts";

export interface KillOptions {
  /** A name ("TERM", "SIGTERM") or number; default TERM. */
  signal?: string | number;
  /** How long after a signal other than KILL the job gets before KILL; default 5 s. */
  graceMs?: number;
}

export interface LogOptions {
  follow: boolean;
  /** Send the frames after this id. */
  afterId: number;
}

/** Slack on top of a wait-exit's own timeout before the daemon gives up on the agent's answer. */
const WAIT_SLACK_MS = 30_000;

/** 0 or nothing means the default; otherwise a size within the ring's bounds. */
export function ringBytesFor(requested: number | undefined): number {
  if (requested === undefined || requested === 0) return DEFAULT_RING_BYTES;
  if (!Number.isInteger(requested) || requested < MIN_RING_BYTES || requested > MAX_RING_BYTES) {
    throw new CorralError(
      "invalid_request",
      `Invalid query parameter "ring_bytes" ${requested}: use 0 for the default (${DEFAULT_RING_BYTES}) or ${MIN_RING_BYTES} to ${MAX_RING_BYTES} bytes`,
    );
  }
  return requested;
}

export class BackgroundJobs {
  constructor(private readonly manager: Pick<VmManager, "withAgent">) {}

  launch(hostname: string, spec: ExecSpec, ringBytes: number, signal: AbortSignal): Promise<BackgroundLaunch> {
    if (spec.stdin) throw new CorralError("invalid_request", "stdin=true cannot be combined with background=true: a background job has no input");
    const body: JobLaunchRequest = { spec, ring_bytes: ringBytes };
    return this.manager.withAgent(hostname, signal, (agent) => agent.callJson<BackgroundLaunch>("POST", JOB_AGENT_PATHS.jobs, { body: { ...body }, signal }));
  }

  list(hostname: string, signal: AbortSignal): Promise<BackgroundInfo[]> {
    return this.manager.withAgent(hostname, signal, (agent) => agent.callJson<BackgroundInfo[]>("GET", JOB_AGENT_PATHS.jobs, { signal }));
  }

  info(hostname: string, execId: string, signal: AbortSignal): Promise<BackgroundInfo> {
    const path = JOB_AGENT_PATHS.job(assertExecId(execId));
    return this.manager.withAgent(hostname, signal, (agent) => agent.callJson<BackgroundInfo>("GET", path, { signal }));
  }

  /** Kills the job if it still runs and removes it with its log; later calls on its id answer 410. */
  remove(hostname: string, execId: string, signal: AbortSignal): Promise<Reaped> {
    const path = JOB_AGENT_PATHS.job(assertExecId(execId));
    return this.manager.withAgent(hostname, signal, (agent) => agent.callJson<Reaped>("DELETE", path, { signal }));
  }

  kill(hostname: string, execId: string, options: KillOptions, signal: AbortSignal): Promise<KillResult> {
    const path = JOB_AGENT_PATHS.kill(assertExecId(execId));
    const body: JobKillRequest = { signal: parseSignal(options.signal ?? "TERM"), grace_ms: options.graceMs ?? DEFAULT_KILL_GRACE_MS };
    return this.manager.withAgent(hostname, signal, (agent) => agent.callJson<KillResult>("POST", path, { body: { ...body }, signal }));
  }

  /** Waits in the guest (no polling) until the job exits or `seconds` pass; `signal` aborts when the client leaves. */
  waitExit(hostname: string, execId: string, seconds: number, signal: AbortSignal): Promise<WaitExit> {
    const path = `${JOB_AGENT_PATHS.wait(assertExecId(execId))}?timeout_ms=${seconds * 1000}`;
    const bounded = AbortSignal.any([signal, AbortSignal.timeout(seconds * 1000 + WAIT_SLACK_MS)]);
    return this.manager.withAgent(hostname, bounded, (agent) => agent.callJson<WaitExit>("GET", path, { signal: bounded }));
  }

  /** The job's NDJSON log, unread; destroying it stops the reader in the guest. */
  logs(hostname: string, execId: string, options: LogOptions, signal: AbortSignal): Promise<ClientHttp2Stream> {
    const query = new URLSearchParams({ from_id: String(options.afterId), follow: String(options.follow) });
    const path = `${JOB_AGENT_PATHS.logs(assertExecId(execId))}?${query.toString()}`;
    return this.manager.withAgent(hostname, signal, async (agent) => (await agent.call("GET", path, { signal })).stream);
  }
}
