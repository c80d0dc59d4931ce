// Background exec jobs: what the daemon's API and the guest agent say about them. A job is a command the
// agent runs detached from any request, its output kept in a bounded ring of numbered frames.
// Shared by src/daemon, src/guest and src/sdk; no node: imports, and no TypeBox (the guest agent bundles this
// file): the API's schemas are in jobs-api.ts.
import type { ExecFrame, ExecSpec } from "./agent.ts";
import { CorralError, quote } from "./errors.ts";

/** Job ids are chosen by the agent: "ex_" and 16 hex digits. They end up in URLs and logs, so nothing else passes. */
export const EXEC_ID_PATTERN = "^ex_[0-9a-f]{16}$";
const execIdRe = new RegExp(EXEC_ID_PATTERN);

export function isExecId(value: string): boolean {
  return execIdRe.test(value);
}

export function assertExecId(value: string): string {
  if (!isExecId(value))
    throw new CorralError("invalid_name", `Invalid exec id ${quote(value)}: use an id returned by POST /vm/HOST/exec?background=true (like "ex_0123456789abcdef")`);
  return value;
}

/** Per-job ring buffer: its default and bounds, in bytes (output plus FRAME_OVERHEAD per frame). */
export const DEFAULT_RING_BYTES = 1024 * 1024;
export const MIN_RING_BYTES = 4 * 1024;
export const MAX_RING_BYTES = 16 * 1024 * 1024;
/**
 * What each kept frame costs the ring besides its output: roughly its objects' size in the agent's memory.
 * A command that prints one byte at a time makes a frame per byte; counting this keeps the memory a ring
 * really takes close to ring_bytes.
 */
export const FRAME_OVERHEAD = 256;

/** The TERM-then-KILL grace of a kill request that names none. */
export const DEFAULT_KILL_GRACE_MS = 5000;
export const MAX_KILL_GRACE_MS = 3_600_000;
/** wait-exit: `timeout` is whole seconds (Slicer's SDKs send an integer); its default and limit. */
export const DEFAULT_WAIT_SECONDS = 30;
export const MAX_WAIT_SECONDS = 86_400;

/** Linux signal numbers (x86_64), by name without "SIG". The guest is always Linux on x86_64. */
export const LINUX_SIGNALS: Readonly<Record<string, number>> = {
  HUP: 1,
  INT: 2,
  QUIT: 3,
  ILL: 4,
  TRAP: 5,
  ABRT: 6,
  BUS: 7,
  FPE: 8,
  KILL: 9,
  USR1: 10,
  SEGV: 11,
  USR2: 12,
  PIPE: 13,
  ALRM: 14,
  TERM: 15,
  STKFLT: 16,
  CHLD: 17,
  CONT: 18,
  STOP: 19,
  TSTP: 20,
  TTIN: 21,
  TTOU: 22,
  URG: 23,
  XCPU: 24,
  XFSZ: 25,
  VTALRM: 26,
  PROF: 27,
  WINCH: 28,
  IO: 29,
  PWR: 30,
  SYS: 31,
};

/**
 * "TERM", "SIGTERM", "sigterm", 15 or "15" -> "SIGTERM" (the name Node and exec frames use). Anything else is
 * a 400 that lists what would do.
 */
export function parseSignal(value: string | number): string {
  const text = String(value).trim();
  if (/^\d+$/.test(text)) {
    const number = Number(text);
    const name = Object.keys(LINUX_SIGNALS).find((n) => LINUX_SIGNALS[n] === number);
    if (name) return `SIG${name}`;
  } else {
    const name = text.toUpperCase().replace(/^SIG/, "");
    if (Object.hasOwn(LINUX_SIGNALS, name)) return `SIG${name}`;
  }
  throw new CorralError("invalid_request", `Invalid signal ${quote(value)}: use a name such as "TERM", "INT" or "KILL", or a number from 1 to 31`);
}

/** `?timeout=` of wait-exit: whole seconds, as Slicer defines it; "30s" and "1.5" are refused, not guessed at. */
export function parseWaitSeconds(text: string | undefined): number {
  if (text === undefined || text === "") return DEFAULT_WAIT_SECONDS;
  if (!/^\d+$/.test(text.trim()) || Number(text) > MAX_WAIT_SECONDS) {
    throw new CorralError("invalid_request", `Invalid query parameter "timeout" ${quote(text)}: use whole seconds from 0 to ${MAX_WAIT_SECONDS}`);
  }
  return Number(text);
}

// ---- wire shapes (the schemas in jobs-api.ts describe the same objects) ----

export type JobState = "running" | "exited";

export interface BackgroundLaunch {
  exec_id: string;
  pid: number;
  started_at: string;
  ring_bytes: number;
}

export interface BackgroundInfo {
  exec_id: string;
  pid: number;
  command: string;
  args: string[];
  cwd?: string;
  uid?: number;
  gid?: number;
  shell?: string;
  state: JobState;
  running: boolean;
  started_at: string;
  /** Once exited: the code, or 128+N when a signal ended it (then `signal` names it). */
  exit_code?: number;
  signal?: string;
  ended_at?: string;
  encoding?: "base64";
  bytes_written: number;
  bytes_dropped: number;
  frames_dropped: number;
  /** The id the next log frame will get: the frames so far are 1 .. next_id-1. */
  next_id: number;
  ring_bytes: number;
}

export interface KillResult {
  exec_id: string;
  pid: number;
  running: boolean;
  /** The signal sent ("SIGTERM"), or "" when the job had already exited. */
  signal_sent: string;
}

export interface WaitExit {
  exec_id: string;
  running: boolean;
  state: JobState;
  exit_code?: number;
  signal?: string;
  ended_at?: string;
  timed_out: boolean;
}

export interface Reaped {
  exec_id: string;
  reaped: boolean;
}

// ---- log frames ----

/** An exec frame with its place in the job's log. */
export type JobOutputFrame = ExecFrame & { id: number };

/** Sent instead of frames the ring no longer holds; its id is the last dropped frame's. */
export interface GapFrame {
  type: "gap";
  id: number;
  timestamp: string;
  stdout: "";
  stderr: "";
  exit_code: 0;
  dropped_bytes: number;
  dropped_frames: number;
  message: string;
}

export type JobLogFrame = JobOutputFrame | GapFrame;

// ---- host <-> guest ----

export const JOB_AGENT_PATHS = {
  jobs: "/v1/jobs",
  job: (id: string) => `/v1/jobs/${id}`,
  logs: (id: string) => `/v1/jobs/${id}/logs`,
  kill: (id: string) => `/v1/jobs/${id}/kill`,
  wait: (id: string) => `/v1/jobs/${id}/wait`,
} as const;

export interface JobLaunchRequest {
  spec: ExecSpec;
  ring_bytes: number;
}

/** The agent's kill request: the signal already checked and named by the daemon. */
export interface JobKillRequest {
  signal: string;
  grace_ms: number;
}
