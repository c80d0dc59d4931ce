// A VM's power: pause, resume, shutdown (action=shutdown|reboot from the query or a JSON body), relaunch,
// suspend, restore. Answers are text/plain, as Slicer's are, except relaunch, which answers like a create.
import { Type } from "@sinclair/typebox";
import { CorralError } from "../../protocol/errors.ts";
import { CreatedNodeSchema, ShutdownBodySchema, ShutdownQuerySchema, VmParams, WaitQuerySchema } from "../../protocol/slicer.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import { createdView } from "./nodes-view.ts";
import { parseWait, waitAsAsked } from "./waiting.ts";

export function lifecycleRoutes(app: DaemonApp, ctx: DaemonContext): void {
  const { manager } = ctx;
  const { power } = manager;

  app.post("/vm/:hostname/pause", { schema: { params: VmParams } }, async (request, reply) => {
    await power.pause(request.params.hostname);
    return reply.type("text/plain").send(`VM ${request.params.hostname} paused\n`);
  });

  app.post("/vm/:hostname/resume", { schema: { params: VmParams } }, async (request, reply) => {
    await power.resume(request.params.hostname);
    return reply.type("text/plain").send(`VM ${request.params.hostname} resumed\n`);
  });

  app.post("/vm/:hostname/shutdown", { schema: { params: VmParams, querystring: ShutdownQuerySchema, body: Type.Optional(ShutdownBodySchema) } }, async (request, reply) => {
    const fromQuery = request.query.action;
    const fromBody = request.body?.action;
    if (fromQuery && fromBody && fromQuery !== fromBody) {
      throw new CorralError("invalid_request", `The query asks for ${JSON.stringify(fromQuery)} and the body for ${JSON.stringify(fromBody)}: give one action`);
    }
    const hostname = request.params.hostname;
    if ((fromQuery ?? fromBody) === "reboot") {
      await power.reboot(hostname);
      return reply.type("text/plain").send(`VM ${hostname} is rebooting\n`);
    }
    const after = await power.shutdown(hostname);
    return reply.type("text/plain").send(after ? `VM ${hostname} is stopped; its disk is kept\n` : `VM ${hostname} is stopped and removed\n`);
  });

  app.post("/vm/:hostname/relaunch", { schema: { params: VmParams, querystring: WaitQuerySchema, response: { 200: CreatedNodeSchema } } }, async (request) => {
    const waiting = parseWait(request.query);
    const record = await power.relaunch(request.params.hostname);
    await waitAsAsked(manager, record.hostname, waiting, { run: async () => undefined, outcome: "it keeps booting" });
    return createdView(record);
  });

  app.post("/vm/:hostname/suspend", { schema: { params: VmParams } }, async (request, reply) => {
    await power.suspend(request.params.hostname);
    return reply.type("text/plain").send(`VM ${request.params.hostname} is suspended: its memory is saved and its QEMU process is gone\n`);
  });

  app.post("/vm/:hostname/restore", { schema: { params: VmParams, querystring: WaitQuerySchema } }, async (request, reply) => {
    const waiting = parseWait(request.query);
    const record = await power.restore(request.params.hostname);
    await waitAsAsked(manager, record.hostname, waiting, { run: async () => undefined, outcome: "it keeps restoring" });
    return reply.type("text/plain").send(`VM ${request.params.hostname} is restored\n`);
  });
}
