// TTstack's agent API, the read side: GET /api/info (this host's resources, engines, storage, images) and
// GET /api/images. Resources in use are the VMs that run (paused ones included: they hold their memory).
import { statfs } from "node:fs/promises";
import { cpus, hostname, totalmem } from "node:os";
import { Type } from "@sinclair/typebox";
import { AgentImageSchema, CORRAL_ENGINES, HostInfoSchema } from "../../protocol/ttstack-agent.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import { isLive } from "../vm/vm-state.ts";

const MiB = 1024 * 1024;

export function ttstackAgentRoutes(app: DaemonApp, ctx: DaemonContext): void {
  app.get("/api/info", { schema: { response: { 200: HostInfoSchema } } }, async () => {
    const live = ctx.manager.list().filter((vm) => isLive(vm.state));
    const disk = await statfs(ctx.stateDir);
    const images = await ctx.images.list();
    return {
      id: ctx.hostId,
      hostname: hostname(),
      cpu_total: cpus().length,
      cpu_used: live.reduce((sum, vm) => sum + vm.cpus, 0),
      mem_total: Math.floor(totalmem() / MiB),
      mem_used: Math.ceil(live.reduce((sum, vm) => sum + vm.ramBytes, 0) / MiB),
      disk_total: Math.floor((disk.blocks * disk.bsize) / MiB),
      disk_used: Math.ceil(((disk.blocks - disk.bfree) * disk.bsize) / MiB),
      vm_count: live.length,
      engines: [...CORRAL_ENGINES],
      storage: "file",
      images: images.map((i) => i.name),
    };
  });

  app.get("/api/images", { schema: { response: { 200: Type.Array(AgentImageSchema) } } }, async () =>
    (await ctx.images.list()).map((i) => ({
      name: i.name,
      version: i.version,
      kernel_release: i.kernel_release,
      size_mib: Math.ceil(i.disk_size_bytes / MiB),
      created_at: i.created_at,
    })),
  );
}
