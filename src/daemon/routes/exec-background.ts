// Background exec: POST /vm/HOST/exec?background=true starts a job (answered 201 at once; the job lives in
// the guest), then GET /vm/HOST/exec (list), GET|DELETE /vm/HOST/exec/ID, GET /vm/HOST/exec/ID/logs
// (NDJSON, follow and resume), POST /vm/HOST/exec/ID/kill, GET /vm/HOST/exec/ID/wait-exit.
import type { ServerResponse } from "node:http";
import type { Readable } from "node:stream";
import { Type } from "@sinclair/typebox";
import type { FastifyReply } from "fastify";
import type { ExecSpec } from "../../protocol/agent.ts";
import { CorralError } from "../../protocol/errors.ts";
import { parseWaitSeconds } from "../../protocol/jobs.ts";
import {
  BackgroundInfoSchema,
  ExecJobParams,
  JobLogsQuerySchema,
  KillBodySchema,
  KillResultSchema,
  ReapedSchema,
  WaitExitQuerySchema,
  WaitExitSchema,
  type BackgroundExecQuery,
} from "../../protocol/jobs-api.ts";
import { VmParams } from "../../protocol/slicer.ts";
import { BackgroundJobs, ringBytesFor } from "../jobs/background-jobs.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";

/**
 * Slicer's Go SDK sends kill options as an empty body (with a JSON content type) when none are set; fastify
 * would validate that missing body against the schema and refuse it.
 */
/** Aborts when the client goes away before the answer is complete. */
function clientGone(reply: { raw: ServerResponse }): AbortSignal {
  const gone = new AbortController();
  reply.raw.on("close", () => {
    if (!reply.raw.writableFinished) gone.abort();
  });
  return gone.signal;
}

/**
 * The background branch of POST /vm/HOST/exec, given the exec spec the exec route parsed. The request body
 * (if any) is ignored: a background job has no stdin.
 */
export async function launchBackgroundExec(
  ctx: DaemonContext,
  request: { params: { hostname: string }; query: BackgroundExecQuery },
  body: Readable,
  reply: FastifyReply,
  spec: ExecSpec,
): Promise<FastifyReply> {
  body.resume();
  if (request.query.buffered)
    throw new CorralError("invalid_request", "buffered=true cannot be combined with background=true: read a background job's output with GET /vm/HOST/exec/ID/logs");
  const ringBytes = ringBytesFor(request.query.ring_bytes);
  const launched = await new BackgroundJobs(ctx.manager).launch(request.params.hostname, spec, ringBytes, AbortSignal.timeout(60_000));
  return reply.code(201).type("application/json").send(launched);
}

export function backgroundExecRoutes(app: DaemonApp, ctx: DaemonContext): void {
  const jobs = new BackgroundJobs(ctx.manager);
  const quick = (): AbortSignal => AbortSignal.timeout(60_000);

  app.get("/vm/:hostname/exec", { schema: { params: VmParams, response: { 200: Type.Array(BackgroundInfoSchema) } } }, async (request) =>
    jobs.list(request.params.hostname, quick()),
  );

  app.get("/vm/:hostname/exec/:exec_id", { schema: { params: ExecJobParams, response: { 200: BackgroundInfoSchema } } }, async (request) =>
    jobs.info(request.params.hostname, request.params.exec_id, quick()),
  );

  app.delete("/vm/:hostname/exec/:exec_id", { schema: { params: ExecJobParams, response: { 200: ReapedSchema } } }, async (request) =>
    jobs.remove(request.params.hostname, request.params.exec_id, quick()),
  );

  app.post("/vm/:hostname/exec/:exec_id/kill", { schema: { params: ExecJobParams, body: KillBodySchema, response: { 200: KillResultSchema } } }, async (request) => {
    const { signal, grace_ms } = request.body;
    return jobs.kill(request.params.hostname, request.params.exec_id, { signal, graceMs: grace_ms }, quick());
  });

  app.get(
    "/vm/:hostname/exec/:exec_id/wait-exit",
    { schema: { params: ExecJobParams, querystring: WaitExitQuerySchema, response: { 200: WaitExitSchema } } },
    async (request, reply) => {
      const seconds = parseWaitSeconds(request.query.timeout);
      return jobs.waitExit(request.params.hostname, request.params.exec_id, seconds, clientGone(reply));
    },
  );

  app.get("/vm/:hostname/exec/:exec_id/logs", { schema: { params: ExecJobParams, querystring: JobLogsQuerySchema } }, async (request, reply) => {
    const gone = clientGone(reply);
    const log = await jobs.logs(
      request.params.hostname,
      request.params.exec_id,
      { follow: request.query.follow ?? false, afterId: request.query.from_id ?? 0 },
      AbortSignal.any([gone, quick()]),
    );
    // The guest keeps a followed log open until the job exits; a client that leaves cancels its reader there.
    gone.addEventListener("abort", () => log.destroy(), { once: true });
    return reply.header("content-type", "application/x-ndjson").header("cache-control", "no-store").send(log);
  });
}
