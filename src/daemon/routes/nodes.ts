// Host groups and their nodes: GET /hostgroup, GET /nodes, GET|POST /hostgroup/NAME/nodes,
// DELETE /hostgroup/NAME/nodes/HOSTNAME.
import { Type } from "@sinclair/typebox";
import { CorralError } from "../../protocol/errors.ts";
import { parseLifetime } from "../../protocol/lifetime.ts";
import {
  CreatedNodeSchema,
  CreateNodeBodySchema,
  CreateNodeQuerySchema,
  DeletedNodeSchema,
  GroupNodeParams,
  GroupParams,
  HostGroupSchema,
  NodeListQuerySchema,
  NodeSchema,
  type CreateNodeBody,
} from "../../protocol/slicer.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import type { HostGroupConfig } from "../config.ts";
import type { SandboxRequest } from "../vm/vm-manager.ts";
import { groupNetworks, parseNetworkOverride, parseStaticIp } from "./network-fields.ts";
import { createdView, hostGroupView, nodeView } from "./nodes-view.ts";
import { createForClient } from "./client-create.ts";
import { parseWait } from "./waiting.ts";

const GiB = 1024 * 1024 * 1024;

/**
 * Turns the create body into a request, refusing fields Corral cannot honour rather than ignoring them.
 * `ip` and `network` depend on the group's mode (see network-fields.ts).
 */
function sandboxRequest(body: CreateNodeBody | undefined, group: HostGroupConfig, configured: readonly HostGroupConfig[]): SandboxRequest {
  const b = body ?? {};
  if (b.gpu_count) throw new CorralError("invalid_request", 'Invalid body field "gpu_count": this daemon has no GPUs to pass through');
  const ip = parseStaticIp(b.ip, group, configured);
  const networkPolicy = parseNetworkOverride(b.network, group, configured);
  if (b.github_user) {
    throw new CorralError("invalid_request", 'Invalid body field "github_user": keys cannot be fetched from GitHub here; pass them in "ssh_keys"');
  }
  if (b.disk_image) throw new CorralError("invalid_request", 'Invalid body field "disk_image": the image is chosen by the host group');
  if (b.ram_bytes !== undefined && b.ram_gb !== undefined) throw new CorralError("invalid_request", "Give the memory size once: ram_bytes or ram_gb");
  const ramBytes = b.ram_bytes ?? (b.ram_gb !== undefined ? Math.round(b.ram_gb * GiB) : undefined);
  if (ramBytes !== undefined && ramBytes < 128 * 1024 * 1024) throw new CorralError("invalid_request", 'Invalid body field "ram_gb": a VM needs at least 128 MiB');
  const request: SandboxRequest = {};
  if (b.cpus !== undefined) request.cpus = b.cpus;
  if (ramBytes !== undefined) request.ramBytes = ramBytes;
  if (b.userdata !== undefined) request.userdata = b.userdata;
  if (b.ssh_keys !== undefined) request.sshKeys = b.ssh_keys;
  if (b.import_user !== undefined) request.importUser = b.import_user;
  if (b.tags !== undefined) request.tags = b.tags;
  if (b.persistent !== undefined) request.persistent = b.persistent;
  if (b.lifetime !== undefined) request.lifetimeMs = parseLifetime(b.lifetime, 'body field "lifetime"');
  if (ip !== undefined) request.ip = ip;
  if (networkPolicy !== undefined) request.networkPolicy = networkPolicy;
  return request;
}

export function nodeRoutes(app: DaemonApp, ctx: DaemonContext): void {
  const { manager } = ctx;

  app.get("/hostgroup", { schema: { response: { 200: Type.Array(HostGroupSchema) } } }, async () => {
    const listed = manager.listedGroups();
    const networks = groupNetworks(
      manager,
      listed.map((l) => l.group),
    );
    return listed.map(({ group, count }, i) => hostGroupView(group, count, networks[i]!));
  });

  app.get("/nodes", { schema: { querystring: NodeListQuerySchema, response: { 200: Type.Array(NodeSchema) } } }, async (request) =>
    manager.list({ tag: request.query.tag, tagPrefix: request.query.tag_prefix }).map((r) => nodeView(r, manager.lastAgentCall(r.hostname), manager.healthOf(r))),
  );

  app.get("/hostgroup/:name/nodes", { schema: { params: GroupParams, querystring: NodeListQuerySchema, response: { 200: Type.Array(NodeSchema) } } }, async (request) => {
    manager.group(request.params.name);
    return manager
      .list({ hostgroup: request.params.name, tag: request.query.tag, tagPrefix: request.query.tag_prefix })
      .map((r) => nodeView(r, manager.lastAgentCall(r.hostname), manager.healthOf(r)));
  });

  app.post(
    "/hostgroup/:name/nodes",
    { schema: { params: GroupParams, querystring: CreateNodeQuerySchema, body: Type.Optional(CreateNodeBodySchema), response: { 201: CreatedNodeSchema } } },
    async (request, reply) => {
      // Check everything about the request before a VM exists.
      const waiting = parseWait(request.query);
      const sandbox = sandboxRequest(request.body, manager.group(request.params.name), manager.groups());
      // A create that did not become ready, or whose client left, leaves nothing behind.
      const record = await createForClient(manager, reply, {
        make: (signal) => manager.createSandbox(request.params.name, sandbox, { signal }),
        waiting,
        timeoutOutcome: "it has been removed",
      });
      reply.code(201);
      return createdView(record);
    },
  );

  app.delete("/hostgroup/:name/nodes/:hostname", { schema: { params: GroupNodeParams, response: { 200: DeletedNodeSchema } } }, async (request) => {
    const { diskRemoved } = await manager.deleteNode(request.params.name, request.params.hostname);
    return { message: "Node deleted", disk_removed: String(diskRemoved) };
  });
}
