// One VM: GET /vm/HOST (describe), PATCH /vm/HOST (its lifetime), PATCH /vm/HOST/network (its egress policy),
// GET|HEAD /vm/HOST/health, GET /vm/HOST/logs.
import { Type } from "@sinclair/typebox";
import { parseLifetime } from "../../protocol/lifetime.ts";
import { NetworkPatchBodySchema } from "../../protocol/net.ts";
import { LogsQuerySchema, LogsSchema, NodeSchema, VmHealthSchema, VmNetworkSchema, VmParams, VmPatchSchema } from "../../protocol/slicer.ts";
import type { VmRecord } from "../vm/vm-store.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import { checkPatchLists } from "./network-fields.ts";
import { nodeView, shownState } from "./nodes-view.ts";

const DEFAULT_LOG_LINES = 20;
const NS_PER_SECOND = 1e9;

const DescribeSchema = Type.Composite([
  NodeSchema,
  Type.Object({
    image: Type.String(),
    state: Type.String(),
    network: VmNetworkSchema,
  }),
]);

export function vmRoutes(app: DaemonApp, ctx: DaemonContext): void {
  const { manager } = ctx;

  const describe = (record: VmRecord) => {
    const health = manager.healthOf(record);
    return {
      ...nodeView(record, manager.lastAgentCall(record.hostname), health),
      image: `${record.image}@${record.imageVersion}`,
      state: shownState(record, health),
      // Slicer's TypeScript SDK reads network.mode unconditionally; its Go SDK reads override and effective.
      network: manager.networkOf(record),
    };
  };

  app.get("/vm/:hostname", { schema: { params: VmParams, response: { 200: DescribeSchema } } }, async (request) => describe(manager.get(request.params.hostname)));

  // E2B's setTimeout: the sandbox now expires `lifetime` from now (longer or shorter than before).
  app.patch("/vm/:hostname", { schema: { params: VmParams, body: VmPatchSchema, response: { 200: DescribeSchema } } }, async (request) => {
    const { lifetime } = request.body;
    const lifetimeMs = lifetime === null ? null : parseLifetime(lifetime, 'body field "lifetime"');
    return describe(await manager.setLifetime(request.params.hostname, lifetimeMs));
  });

  // Corral's: the VM's allow/drop lists (null: back to its group's) and deny_outgoing, applied to the live rules.
  app.patch("/vm/:hostname/network", { schema: { params: VmParams, body: NetworkPatchBodySchema, response: { 200: VmNetworkSchema } } }, async (request) => {
    const record = manager.get(request.params.hostname);
    checkPatchLists(request.body, manager.group(record.hostgroup), manager.groups());
    return manager.setNetworkPolicy(record.hostname, request.body);
  });

  app.get("/vm/:hostname/health", { schema: { params: VmParams, response: { 200: VmHealthSchema } } }, async (request) => {
    const record = manager.get(request.params.hostname);
    const health = await manager.health(record.hostname, AbortSignal.timeout(10_000));
    const body = {
      hostname: health.hostname,
      agent_uptime: Math.round(health.agent_uptime * NS_PER_SECOND),
      agent_version: health.agent_version,
      system_uptime: Math.round(health.system_uptime * NS_PER_SECOND),
      userdata_ran: health.userdata_ran,
      ip: record.ip,
    };
    return health.userdata_exit_code === null ? body : { ...body, userdata_exit_code: health.userdata_exit_code };
  });

  app.get("/vm/:hostname/logs", { schema: { params: VmParams, querystring: LogsQuerySchema, response: { 200: LogsSchema } } }, async (request) => {
    const lines = request.query.lines ?? DEFAULT_LOG_LINES;
    const content = await manager.logs(request.params.hostname, lines);
    return { hostname: request.params.hostname, lines, content };
  });
}
