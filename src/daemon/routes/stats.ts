// GET /nodes/stats and GET /node/HOST/stats: each VM's resource snapshot, read by its agent. A VM whose agent
// cannot answer (stopped, paused, booting) is listed with `snapshot: null` and the reason in `error`.
// The single-VM route answers a one-element list: Slicer's Go SDK decodes it as one.
import { Type } from "@sinclair/typebox";
import { STATS_PATH, type VmSnapshot } from "../../protocol/stats.ts";
import { NodeStatSchema, VmParams, type NodeStat } from "../../protocol/slicer.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import type { VmManager } from "../vm/vm-manager.ts";
import type { VmRecord } from "../vm/vm-store.ts";

const STATS_TIMEOUT_MS = 5000;

async function statOf(manager: VmManager, record: VmRecord): Promise<NodeStat> {
  const base = { hostname: record.hostname, ip: record.ip, created_at: record.createdAt };
  try {
    const signal = AbortSignal.timeout(STATS_TIMEOUT_MS);
    const snapshot = await manager.withAgent(record.hostname, signal, (agent) => agent.callJson<VmSnapshot>("GET", STATS_PATH, { signal }));
    return { ...base, snapshot };
  } catch (err) {
    return { ...base, snapshot: null, error: (err as Error).message };
  }
}

export function statsRoutes(app: DaemonApp, ctx: DaemonContext): void {
  const { manager } = ctx;

  app.get("/nodes/stats", { schema: { response: { 200: Type.Array(NodeStatSchema) } } }, async () => Promise.all(manager.list().map((record) => statOf(manager, record))));

  app.get("/node/:hostname/stats", { schema: { params: VmParams, response: { 200: Type.Array(NodeStatSchema) } } }, async (request) => [
    await statOf(manager, manager.get(request.params.hostname)),
  ]);
}
