// GET /templates (one entry per host group) and POST /templates/NAME/rebuild (202: a new template is built
// in the background; VMs cloned from the old one keep running).
import { Type } from "@sinclair/typebox";
import { GroupParams } from "../../protocol/slicer.ts";
import { TemplateInfoSchema } from "../../protocol/templates-api.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";

export function templateRoutes(app: DaemonApp, { templates }: DaemonContext): void {
  app.get("/templates", { schema: { response: { 200: Type.Array(TemplateInfoSchema) } } }, async () => templates.list());

  app.post("/templates/:name/rebuild", { schema: { params: GroupParams, response: { 202: TemplateInfoSchema } } }, async (request, reply) => {
    const info = templates.rebuild(request.params.name);
    return reply.code(202).send(info);
  });
}
