// `client.bg`: background exec. A job started here runs in the VM's agent until it exits or is removed,
// whatever happens to this client or the daemon; its output is read back (and resumed) from the job's log.
import type { BackgroundInfo, BackgroundLaunch, JobLogFrame, KillResult, Reaped, WaitExit } from "../protocol/jobs.ts";
import { ndjson } from "./ndjson.ts";
import { queryString, type Transport } from "./transport.ts";

export interface BackgroundExecOptions {
  cmd: string;
  args?: string[];
  env?: Record<string, string> | string[];
  cwd?: string;
  uid?: number;
  gid?: number;
  /** A user of the guest by name. */
  user?: string;
  shell?: string;
  /** "base64" keeps binary output intact in the log frames (default "text"). */
  stdio?: "text" | "base64";
  /** Bytes of output the job keeps (default 1 MiB); older output is dropped and reported as a gap. */
  ringBytes?: number;
}

export interface BackgroundLogOptions {
  /** Keep streaming until the job exits. */
  follow?: boolean;
  /** Only the frames after this id (resume where a previous read stopped). */
  fromId?: number;
  signal?: AbortSignal;
}

export interface BackgroundKillOptions {
  /** A name ("TERM", "SIGINT") or number; default TERM. */
  signal?: string | number;
  /** Milliseconds before KILL follows a signal the job survives; default 5000. */
  graceMs?: number;
}

export class BackgroundExecApi {
  constructor(private readonly transport: Transport) {}

  exec(hostname: string, options: BackgroundExecOptions): Promise<BackgroundLaunch> {
    const env = Array.isArray(options.env) ? options.env : Object.entries(options.env ?? {}).map(([k, v]) => `${k}=${v}`);
    const query = queryString({
      background: true,
      cmd: options.cmd,
      args: options.args,
      env,
      cwd: options.cwd,
      uid: options.uid,
      gid: options.gid,
      user: options.user,
      shell: options.shell,
      stdio: options.stdio,
      ring_bytes: options.ringBytes,
    });
    return this.transport.json("POST", `${base(hostname)}${query}`);
  }

  list(hostname: string): Promise<BackgroundInfo[]> {
    return this.transport.json("GET", base(hostname));
  }

  info(hostname: string, execId: string): Promise<BackgroundInfo> {
    return this.transport.json("GET", job(hostname, execId));
  }

  /** The job's log frames (output, `gap` where output was dropped, `exit` last); with `follow` until it exits. */
  async *logs(hostname: string, execId: string, options: BackgroundLogOptions = {}): AsyncGenerator<JobLogFrame> {
    const query = queryString({ follow: options.follow || undefined, from_id: options.fromId });
    const response = await this.transport.send("GET", `${job(hostname, execId)}/logs${query}`, { signal: options.signal, timeoutMs: 0 });
    yield* ndjson<JobLogFrame>(response.body);
  }

  /** Signals the job's process group; a signal other than KILL is followed by KILL after the grace. */
  kill(hostname: string, execId: string, options: BackgroundKillOptions = {}): Promise<KillResult> {
    const body: Record<string, unknown> = {};
    if (options.signal !== undefined) body.signal = options.signal;
    if (options.graceMs !== undefined) body.grace_ms = options.graceMs;
    return this.transport.json("POST", `${job(hostname, execId)}/kill`, body);
  }

  /** Waits up to `timeoutSeconds` (default 30) for the job to exit; `timed_out` says whether it did not. */
  wait(hostname: string, execId: string, timeoutSeconds?: number): Promise<WaitExit> {
    const http = ((timeoutSeconds ?? 30) + 30) * 1000;
    return this.transport.json("GET", `${job(hostname, execId)}/wait-exit${queryString({ timeout: timeoutSeconds })}`, undefined, http);
  }

  /** Kills the job if it still runs and drops it with its log; its id answers 410 afterwards. */
  remove(hostname: string, execId: string): Promise<Reaped> {
    return this.transport.json("DELETE", job(hostname, execId));
  }
}

function base(hostname: string): string {
  return `/vm/${encodeURIComponent(hostname)}/exec`;
}

function job(hostname: string, execId: string): string {
  return `${base(hostname)}/${encodeURIComponent(execId)}`;
}
