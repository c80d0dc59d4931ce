// GET|PATCH /vm/HOST/tags: read, add, remove or replace a VM's tags (one operation per PATCH).
import { CorralError } from "../../protocol/errors.ts";
import { TagsChangeSchema, TagsSchema, VmParams } from "../../protocol/slicer.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";

export function tagRoutes(app: DaemonApp, ctx: DaemonContext): void {
  const { manager } = ctx;

  app.get("/vm/:hostname/tags", { schema: { params: VmParams, response: { 200: TagsSchema } } }, async (request) => {
    const record = manager.get(request.params.hostname);
    return { hostname: record.hostname, tags: record.tags };
  });

  app.patch("/vm/:hostname/tags", { schema: { params: VmParams, body: TagsChangeSchema, response: { 200: TagsSchema } } }, async (request) => {
    const operations = (["add", "remove", "replace"] as const).filter((op) => request.body[op] !== undefined);
    if (operations.length !== 1) {
      throw new CorralError("invalid_request", `Give exactly one of "add", "remove" or "replace" (got ${operations.length === 0 ? "none" : operations.join(" and ")})`);
    }
    const tags = manager.updateTags(request.params.hostname, request.body);
    return { hostname: request.params.hostname, tags };
  });
}
