// Environments, TTstack's controller routes (crates/ctl/src/handler.rs:183-573) in its envelope: POST
// /api/envs -> 201 EnvDetail (a warning per VM that failed); GET /api/envs -> [Env] (every one, as TTstack's
// clients read it; with `?limit=N[&after=NEXT]` a page, and `next` beside `data`); GET /api/envs/ID ->
// EnvDetail; DELETE /api/envs/ID -> 200 {"ok":true} once every host confirmed, 202 {"ok":true} while a host
// has not (the controller keeps deleting until it does); POST /api/envs/ID/stop|start -> 200 {"ok":true},
// or the error of the first VM that could not (the others are stopped or started; the environment is
// `partial`): TTstack's CLI prints an error where TTstack would have said nothing.
import { Readable } from "node:stream";
import { type Static, Type } from "@sinclair/typebox";
import { CONTROLLER_ANSWERS, CreateEnvSchema, ENV_PAGE_MAX, EnvListQuery, EnvParams } from "../../protocol/controller.ts";
import { CorralError, quote } from "../../protocol/errors.ts";
import { DoneEnvelopeSchema, TT_DONE, ttOk } from "../../protocol/ttstack.ts";
import type { ControllerApp, ControllerContext } from "../context.ts";
import { envDetailView, envView } from "../env-views.ts";
import type { EnvPosition, EnvRecord } from "../db/index.ts";
import type { PowerOutcome } from "../envs.ts";
import { wholeEnvListJson } from "../whole-env-list.ts";
import { describeHostFailure, hostFailure } from "../host-driver.ts";

/**
 * A page's `next`: where the following page starts, opaque to clients (base64url of the last environment's
 * creation time and id), so it stays valid when that environment is deleted meanwhile.
 */
function envCursor(position: EnvPosition): string {
  return Buffer.from(JSON.stringify([position.createdAt, position.id])).toString("base64url");
}

function parseEnvCursor(cursor: string): EnvPosition {
  const refuse = (): never => {
    throw new CorralError("invalid_request", `Cannot list environments after ${quote(cursor)}: not a position this controller gave; pass the \`next\` of the page before`);
  };
  if (!/^[A-Za-z0-9_-]+$/.test(cursor)) return refuse();
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    return refuse();
  }
  if (!Array.isArray(value) || value.length !== 2 || typeof value[0] !== "string" || typeof value[1] !== "string" || Number.isNaN(Date.parse(value[0]))) return refuse();
  return { createdAt: value[0], id: value[1] };
}

/** The answer to a stop or a start that some VM did not follow: that VM's error, in the host's terms. */
function powerFailure(action: "stop" | "start", outcome: PowerOutcome & { failure: NonNullable<PowerOutcome["failure"]> }): CorralError {
  const { env, failure } = outcome;
  const vm = env.vms.find((v) => v.id === failure.vmId);
  const cause = hostFailure(vm?.hostId ?? "", failure.error);
  const code = cause instanceof CorralError ? cause.code : "host_unreachable";
  const status = cause instanceof CorralError ? cause.status : 502;
  const done = env.vms.filter((v) => v.error === null).length;
  return new CorralError(
    code,
    `Cannot ${action} every VM of environment ${quote(env.id)}: VM ${quote(failure.vmId)}${vm ? ` on host ${quote(vm.hostId)}` : ""}: ${describeHostFailure(failure.error)} (${done} of ${env.vms.length} VMs ${action === "stop" ? "stopped" : "started"}; the environment is ${env.state})`,
    { status, cause: failure.error },
  );
}

export function envRoutes(app: ControllerApp, ctx: ControllerContext): void {
  const { envs } = ctx;
  // Full host records, not just addresses: each VM's health is in its host's last report. One environment
  // reads only its own hosts (a create must not parse every host's report: see the controller scale bench).
  const hostsOf = async (env: EnvRecord) => {
    const found = await Promise.all([...new Set(env.vms.map((vm) => vm.hostId))].map((id) => ctx.store.findHost(id)));
    return new Map(found.flatMap((host) => (host ? [[host.id, host] as const] : [])));
  };
  const detail = async (env: EnvRecord) => ttOk(envDetailView(env, await hostsOf(env)));

  // Answered from what the create holds (the hosts' addresses and answers): no read of the hosts' records.
  app.post("/api/envs", { schema: { body: CreateEnvSchema, response: { 201: CONTROLLER_ANSWERS.envDetail } } }, async (request, reply) => {
    const created = await envs.create(request.body);
    return reply.code(201).send(ttOk(envDetailView(created.env, created.hosts)));
  });

  app.get("/api/envs", { schema: { querystring: EnvListQuery, response: { 200: Type.Union([CONTROLLER_ANSWERS.envPage, CONTROLLER_ANSWERS.envs]) } } }, async (request, reply) => {
    const { limit, after } = request.query;
    if (limit === undefined) {
      if (after !== undefined) throw new CorralError("invalid_request", `Cannot list environments after a position without a page size: give limit too (1-${ENV_PAGE_MAX})`);
      // Streamed a page at a time (whole-env-list.ts): the whole list at once held the loop for hundreds of ms.
      // The stream carries the schema's `envs` answer as JSON text; fastify passes streams through unserialized,
      // which its typed reply does not know.
      const body = Readable.from(wholeEnvListJson((size, position) => envs.page(size, position)));
      return reply.type("application/json; charset=utf-8").send(body as unknown as Static<typeof CONTROLLER_ANSWERS.envs>);
    }
    const page = await envs.page(limit, after === undefined ? undefined : parseEnvCursor(after));
    return { ...ttOk(page.envs.map(envView)), next: page.next === undefined ? null : envCursor(page.next) };
  });

  app.get("/api/envs/:id", { schema: { params: EnvParams, response: { 200: CONTROLLER_ANSWERS.envDetail } } }, async (request) => detail(await envs.get(request.params.id)));

  app.delete("/api/envs/:id", { schema: { params: EnvParams, response: { 200: DoneEnvelopeSchema, 202: DoneEnvelopeSchema } } }, async (request, reply) => {
    const result = await envs.remove(request.params.id);
    return reply.code(result.done ? 200 : 202).send(TT_DONE);
  });

  for (const action of ["stop", "start"] as const) {
    app.post(`/api/envs/:id/${action}`, { schema: { params: EnvParams, response: { 200: DoneEnvelopeSchema } } }, async (request) => {
      const outcome = await envs[action](request.params.id);
      if (outcome.failure) throw powerFailure(action, { ...outcome, failure: outcome.failure });
      return TT_DONE;
    });
  }
}
