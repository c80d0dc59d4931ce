// Hosts, TTstack's controller routes (crates/ctl/src/handler.rs:59-178) in its envelope: POST /api/hosts
// (TTstack's {addr}, or Virtumancer's {id, uri}) -> 201 Host; GET /api/hosts; GET /api/hosts/ID; DELETE
// /api/hosts/ID -> 200 {"ok":true} (409 while the controller has VMs there).
import { HostParams, CONTROLLER_ANSWERS, RegisterHostSchema } from "../../protocol/controller.ts";
import { DoneEnvelopeSchema, TT_DONE, ttOk } from "../../protocol/ttstack.ts";
import type { ControllerApp, ControllerContext } from "../context.ts";
import { hostView } from "../hosts.ts";

export function hostRoutes(app: ControllerApp, ctx: ControllerContext): void {
  app.post("/api/hosts", { schema: { body: RegisterHostSchema, response: { 201: CONTROLLER_ANSWERS.host } } }, async (request, reply) =>
    reply.code(201).send(ttOk(hostView(await ctx.hosts.register(request.body)))),
  );

  app.get("/api/hosts", { schema: { response: { 200: CONTROLLER_ANSWERS.hosts } } }, async () => ttOk((await ctx.hosts.list()).map(hostView)));

  app.get("/api/hosts/:id", { schema: { params: HostParams, response: { 200: CONTROLLER_ANSWERS.host } } }, async (request) =>
    ttOk(hostView(await ctx.hosts.get(request.params.id))),
  );

  app.delete("/api/hosts/:id", { schema: { params: HostParams, response: { 200: DoneEnvelopeSchema } } }, async (request) => {
    await ctx.hosts.remove(request.params.id);
    return TT_DONE;
  });
}
