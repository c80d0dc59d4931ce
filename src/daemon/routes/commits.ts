// POST /vm/HOST/commit (201: the VM's disk, and memory with memory=true, saved as a commit; the VM runs on),
// GET /vm/commits (?cache_key=), GET|DELETE /vm/commits/ID (409 while forks of it exist), and
// POST /vm/commits/ID/fork (201: a new sandbox from the commit, answered like a create, wait=agent accepted).
import { Type } from "@sinclair/typebox";
import { CommitBodySchema, CommitListQuerySchema, CommitParams, CommitQuerySchema, CommitSchema, CommitVmParams, ForkBodySchema } from "../../protocol/commits-api.ts";
import { CorralError } from "../../protocol/errors.ts";
import { parseLifetime } from "../../protocol/lifetime.ts";
import { CreatedNodeSchema, WaitQuerySchema } from "../../protocol/slicer.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import type { ForkRequest } from "../vm/vm-commits.ts";
import { createdView } from "./nodes-view.ts";
import { parseNetworkOverride } from "./network-fields.ts";
import { createForClient } from "./client-create.ts";
import { parseWait } from "./waiting.ts";

export function commitRoutes(app: DaemonApp, { manager }: DaemonContext): void {
  const { commits } = manager;

  app.post(
    "/vm/:hostname/commit",
    { schema: { params: CommitVmParams, querystring: CommitQuerySchema, body: Type.Optional(CommitBodySchema), response: { 201: CommitSchema } } },
    async (request, reply) => {
      const body = request.body ?? {};
      if (request.query.memory !== undefined && body.memory !== undefined && request.query.memory !== body.memory) {
        throw new CorralError("invalid_request", "The query and the body disagree about memory: give it once");
      }
      const info = await commits.commit(request.params.hostname, {
        memory: request.query.memory ?? body.memory ?? false,
        tags: body.tags ?? [],
        labels: body.labels ?? {},
        cacheKey: body.cache_key ?? "",
      });
      return reply.code(201).send(info);
    },
  );

  app.get("/vm/commits", { schema: { querystring: CommitListQuerySchema, response: { 200: Type.Array(CommitSchema) } } }, async (request) =>
    commits.list({ cacheKey: request.query.cache_key }),
  );

  app.get("/vm/commits/:commit_id", { schema: { params: CommitParams, response: { 200: CommitSchema } } }, async (request) => commits.get(request.params.commit_id));

  app.delete("/vm/commits/:commit_id", { schema: { params: CommitParams } }, async (request) => {
    await commits.remove(request.params.commit_id);
    return { message: `Commit ${request.params.commit_id} deleted` };
  });

  app.post(
    "/vm/commits/:commit_id/fork",
    { schema: { params: CommitParams, querystring: WaitQuerySchema, body: Type.Optional(ForkBodySchema), response: { 201: CreatedNodeSchema } } },
    async (request, reply) => {
      const waiting = parseWait(request.query);
      const body = request.body ?? {};
      const fork: ForkRequest = {
        tags: body.tags,
        sshKeys: body.ssh_keys,
        ...(body.lifetime !== undefined ? { lifetimeMs: parseLifetime(body.lifetime, 'body field "lifetime"') } : {}),
      };
      if (body.network !== undefined) {
        // The policy is checked against the group the fork lands in (the commit's).
        const group = manager.group((await commits.get(request.params.commit_id)).hostgroup);
        fork.networkPolicy = parseNetworkOverride(body.network, group, manager.groups());
      }
      // A fork that did not become ready, or whose client left, leaves nothing behind.
      const record = await createForClient(manager, reply, {
        make: (signal) => commits.fork(request.params.commit_id, fork, signal),
        waiting,
        timeoutOutcome: "it has been removed",
      });
      return reply.code(201).send(createdView(record));
    },
  );
}
