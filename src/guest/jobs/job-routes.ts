// The agent's background-job routes (under /v1/jobs). The daemon has already checked what its clients sent;
// these checks are the guest's own, so a confused host gets a 400 instead of a crash.
import { constants as h2 } from "node:http2";
import type { ExecSpec } from "../../protocol/agent.ts";
import { resolveExecUser } from "../users.ts";
import { withImageDefaults } from "../image-defaults.ts";
import {
  LINUX_SIGNALS,
  MAX_KILL_GRACE_MS,
  MAX_RING_BYTES,
  MAX_WAIT_SECONDS,
  MIN_RING_BYTES,
  type BackgroundLaunch,
  type JobKillRequest,
  type JobLaunchRequest,
} from "../../protocol/jobs.ts";
import { AgentRouteError, readJson, sendJson } from "../http.ts";
import type { AgentRouter } from "../router.ts";
import type { JobRegistry } from "./job-registry.ts";
import { writeJobLog } from "./log-stream.ts";

function bad(message: string): AgentRouteError {
  return new AgentRouteError(400, "invalid_request", message);
}

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === "string");
}

function isCount(value: unknown, max: number): value is number {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= max;
}

export function parseLaunch(body: unknown): JobLaunchRequest {
  const request = body as Partial<JobLaunchRequest> | null;
  const spec = request?.spec as Partial<ExecSpec> | undefined;
  if (typeof spec?.cmd !== "string" || spec.cmd.length === 0 || !isStringList(spec.args) || !isStringList(spec.env)) throw bad("The job needs spec.cmd, spec.args and spec.env");
  if (spec.stdio !== "text" && spec.stdio !== "base64") throw bad('spec.stdio must be "text" or "base64"');
  if (spec.stdin) throw bad("A background job has no stdin");
  for (const key of ["uid", "gid"] as const) if (spec[key] !== undefined && !isCount(spec[key], 4294967294)) throw bad(`spec.${key} must be a user or group id`);
  for (const key of ["cwd", "shell", "user"] as const) if (spec[key] !== undefined && typeof spec[key] !== "string") throw bad(`spec.${key} must be a string`);
  const ringBytes = request?.ring_bytes;
  if (!isCount(ringBytes, MAX_RING_BYTES) || ringBytes < MIN_RING_BYTES) throw bad(`ring_bytes must be from ${MIN_RING_BYTES} to ${MAX_RING_BYTES}`);
  return { spec: resolveExecUser(spec as ExecSpec), ring_bytes: ringBytes };
}

export function parseKill(body: unknown): JobKillRequest {
  const request = body as Partial<JobKillRequest> | null;
  const name = typeof request?.signal === "string" ? request.signal.replace(/^SIG/, "") : "";
  if (!Object.hasOwn(LINUX_SIGNALS, name)) throw bad(`Unknown signal ${JSON.stringify(request?.signal)}`);
  if (!isCount(request?.grace_ms, MAX_KILL_GRACE_MS)) throw bad(`grace_ms must be from 0 to ${MAX_KILL_GRACE_MS}`);
  return { signal: `SIG${name}`, grace_ms: request.grace_ms };
}

function queryCount(query: URLSearchParams, key: string, max: number): number {
  const text = query.get(key) ?? "0";
  if (!/^\d+$/.test(text) || Number(text) > max) throw bad(`Query parameter ${key} must be a whole number up to ${max}`);
  return Number(text);
}

export function registerJobRoutes(router: AgentRouter, jobs: JobRegistry): void {
  router.add("POST", "/v1/jobs", async ({ stream }) => {
    const { spec, ring_bytes } = parseLaunch(await readJson(stream));
    // Like an exec: the image's ENV, WORKDIR and USER where the request is silent.
    const job = await jobs.launch(withImageDefaults(spec), ring_bytes);
    const launched: BackgroundLaunch = { exec_id: job.id, pid: job.pid, started_at: job.startedAt, ring_bytes: job.ring.capacity };
    sendJson(stream, 201, launched);
  });

  router.add("GET", "/v1/jobs", ({ stream }) =>
    sendJson(
      stream,
      200,
      jobs.list().map((job) => job.info()),
    ),
  );

  router.add("GET", "/v1/jobs/:id", ({ stream, params }) => sendJson(stream, 200, jobs.get(params.id as string).info()));

  router.add("DELETE", "/v1/jobs/:id", ({ stream, params }) => {
    const id = params.id as string;
    jobs.remove(id);
    sendJson(stream, 200, { exec_id: id, reaped: true });
  });

  router.add("POST", "/v1/jobs/:id/kill", async ({ stream, params }) => {
    const job = jobs.get(params.id as string);
    const { signal, grace_ms } = parseKill(await readJson(stream));
    sendJson(stream, 200, job.kill(signal, grace_ms));
  });

  router.add("GET", "/v1/jobs/:id/wait", async ({ stream, params, query }) => {
    const job = jobs.get(params.id as string);
    const timeoutMs = queryCount(query, "timeout_ms", MAX_WAIT_SECONDS * 1000);
    const left = new AbortController();
    stream.once("close", () => left.abort());
    sendJson(stream, 200, await job.waitExit(timeoutMs, left.signal));
  });

  router.add("GET", "/v1/jobs/:id/logs", async ({ stream, params, query }) => {
    const job = jobs.get(params.id as string);
    const afterId = queryCount(query, "from_id", Number.MAX_SAFE_INTEGER);
    const follow = query.get("follow") === "true";
    stream.respond({ [h2.HTTP2_HEADER_STATUS]: 200, [h2.HTTP2_HEADER_CONTENT_TYPE]: "application/x-ndjson" });
    const left = new AbortController();
    stream.once("close", () => left.abort());
    await writeJobLog(job, stream, { afterId, follow, signal: left.signal });
    if (!stream.destroyed) stream.end();
  });
}
