// Environments (TTstack's controller API): POST|GET /api/envs, GET|DELETE /api/envs/ID,
// POST /api/envs/ID/stop|start. A delete answers 204 once every host confirmed, else 202 with the
// environment (state "deleting"), which the controller keeps deleting until its hosts confirm.
import { Type } from "@sinclair/typebox";
import { CreateEnvSchema, EnvParams, EnvSchema } from "../../protocol/controller.ts";
import type { ControllerApp, ControllerContext } from "../context.ts";
import { envView } from "../env-views.ts";

export function envRoutes(app: ControllerApp, ctx: ControllerContext): void {
  const { envs } = ctx;
  // Full host records, not just addresses: each VM's health is in its host's last report. One environment
  // reads only its own hosts (a create must not parse every host's report: see the controller scale bench).
  const hostRecords = async () => new Map((await ctx.store.listHosts()).map((host) => [host.id, host]));
  const hostsOf = async (env: Parameters<typeof envView>[0]) => {
    const found = await Promise.all([...new Set(env.vms.map((vm) => vm.hostId))].map((id) => ctx.store.findHost(id)));
    return new Map(found.flatMap((host) => (host ? [[host.id, host] as const] : [])));
  };
  const view = async (env: Parameters<typeof envView>[0]) => envView(env, await hostsOf(env));

  app.post("/api/envs", { schema: { body: CreateEnvSchema, response: { 201: EnvSchema } } }, async (request, reply) =>
    reply.code(201).send(await view(await envs.create(request.body))),
  );

  app.get("/api/envs", { schema: { response: { 200: Type.Array(EnvSchema) } } }, async () => {
    const [list, hosts] = await Promise.all([envs.list(), hostRecords()]);
    return list.map((env) => envView(env, hosts));
  });

  app.get("/api/envs/:id", { schema: { params: EnvParams, response: { 200: EnvSchema } } }, async (request) => view(await envs.get(request.params.id)));

  app.delete("/api/envs/:id", { schema: { params: EnvParams, response: { 202: EnvSchema, 204: Type.Null() } } }, async (request, reply) => {
    const result = await envs.remove(request.params.id);
    return result.done ? reply.code(204).send(null) : reply.code(202).send(await view(result.env));
  });

  app.post("/api/envs/:id/stop", { schema: { params: EnvParams, response: { 200: EnvSchema } } }, async (request) => view(await envs.stop(request.params.id)));

  app.post("/api/envs/:id/start", { schema: { params: EnvParams, response: { 200: EnvSchema } } }, async (request) => view(await envs.start(request.params.id)));
}
