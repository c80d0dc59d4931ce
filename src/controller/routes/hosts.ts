// Hosts, as TTstack's controller and Virtumancer both name them: POST /api/hosts ({addr} or {id, uri}),
// GET /api/hosts, GET|DELETE /api/hosts/ID, and Virtumancer's GET /api/hosts/ID/info.
import { Type } from "@sinclair/typebox";
import { HostInfoViewSchema, HostParams, HostSchema, RegisterHostSchema } from "../../protocol/controller.ts";
import type { ControllerApp, ControllerContext } from "../context.ts";
import { hostView } from "../hosts.ts";

export function hostRoutes(app: ControllerApp, ctx: ControllerContext): void {
  app.post("/api/hosts", { schema: { body: RegisterHostSchema, response: { 201: HostSchema } } }, async (request, reply) =>
    reply.code(201).send(hostView(await ctx.hosts.register(request.body))),
  );

  app.get("/api/hosts", { schema: { response: { 200: Type.Array(HostSchema) } } }, async () => (await ctx.hosts.list()).map(hostView));

  app.get("/api/hosts/:id", { schema: { params: HostParams, response: { 200: HostSchema } } }, async (request) => hostView(await ctx.hosts.get(request.params.id)));

  app.delete("/api/hosts/:id", { schema: { params: HostParams } }, async (request, reply) => {
    await ctx.hosts.remove(request.params.id);
    return reply.code(204).send();
  });

  app.get("/api/hosts/:id/info", { schema: { params: HostParams, response: { 200: HostInfoViewSchema } } }, async (request) => {
    const host = await ctx.hosts.get(request.params.id);
    const threads = host.info?.cpu_total ?? 0;
    const threadsPerCore = host.info?.threads_per_core ?? 1;
    return {
      hostname: host.hostname,
      cpu: threads,
      memory: (host.info?.mem_total ?? 0) * 1024 * 1024,
      cores: Math.max(1, Math.floor(threads / threadsPerCore)),
      threads: threadsPerCore,
    };
  });
}
