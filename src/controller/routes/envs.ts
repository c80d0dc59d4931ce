// Environments, TTstack's controller routes (crates/ctl/src/handler.rs:183-573) in its envelope: POST
// /api/envs -> 201 EnvDetail (a warning per VM that failed); GET /api/envs -> [Env]; GET /api/envs/ID ->
// EnvDetail; DELETE /api/envs/ID -> 200 {"ok":true} once every host confirmed, 202 {"ok":true} while a host
// has not (the controller keeps deleting until it does); POST /api/envs/ID/stop|start -> 200 {"ok":true},
// or the error of the first VM that could not (the others are stopped or started; the environment is
// `partial`): TTstack's CLI prints an error where TTstack would have said nothing.
import { CONTROLLER_ANSWERS, CreateEnvSchema, EnvParams } from "../../protocol/controller.ts";
import { CorralError, quote } from "../../protocol/errors.ts";
import { DoneEnvelopeSchema, TT_DONE, ttOk } from "../../protocol/ttstack.ts";
import type { ControllerApp, ControllerContext } from "../context.ts";
import { envDetailView, envView } from "../env-views.ts";
import type { EnvRecord } from "../db/index.ts";
import type { PowerOutcome } from "../envs.ts";
import { describeHostFailure, hostFailure } from "../host-driver.ts";

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

  app.post("/api/envs", { schema: { body: CreateEnvSchema, response: { 201: CONTROLLER_ANSWERS.envDetail } } }, async (request, reply) =>
    reply.code(201).send(await detail(await envs.create(request.body))),
  );

  app.get("/api/envs", { schema: { response: { 200: CONTROLLER_ANSWERS.envs } } }, async () => ttOk((await envs.list()).map(envView)));

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
