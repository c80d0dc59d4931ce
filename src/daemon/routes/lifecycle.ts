// A VM's power: POST /vm/HOST/pause and /resume. Answers are text/plain, as Slicer's are.
import { VmParams } from "../../protocol/slicer.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";

export function lifecycleRoutes(app: DaemonApp, ctx: DaemonContext): void {
  const { manager } = ctx;

  app.post("/vm/:hostname/pause", { schema: { params: VmParams } }, async (request, reply) => {
    await manager.pause(request.params.hostname);
    return reply.type("text/plain").send(`VM ${request.params.hostname} paused\n`);
  });

  app.post("/vm/:hostname/resume", { schema: { params: VmParams } }, async (request, reply) => {
    await manager.resume(request.params.hostname);
    return reply.type("text/plain").send(`VM ${request.params.hostname} resumed\n`);
  });
}
