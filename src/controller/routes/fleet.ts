// Fleet-wide reads, TTstack's controller routes in its envelope: GET /api/vms/ID (TTstack's Vm), GET
// /api/images (TTstack's ImageInfo: one per image per host, crates/ctl/src/handler.rs:578-606), GET
// /api/status (TTstack's FleetStatus, its ten flat fields, and Corral's beside).
import { CONTROLLER_ANSWERS, VmIdParams, type FleetImage, type FleetStatus } from "../../protocol/controller.ts";
import { ttOk } from "../../protocol/ttstack.ts";
import type { FleetTotals } from "../db/index.ts";
import type { ControllerApp, ControllerContext } from "../context.ts";
import { fleetVmView } from "../env-views.ts";

/** The fleet's totals in TTstack's FleetStatus (over online hosts), Corral's numbers beside. */
export function fleetStatusView(totals: FleetTotals): FleetStatus {
  return {
    hosts: totals.hosts.total,
    hosts_online: totals.hosts.online,
    total_vms: totals.vms.total,
    total_envs: totals.envs,
    cpu_total: totals.cpu.total,
    cpu_used: totals.cpu.used,
    mem_total: totals.mem.total,
    mem_used: totals.mem.used,
    disk_total: totals.disk.total,
    disk_used: totals.disk.used,
    hosts_offline: totals.hosts.offline,
    vms_running: totals.vms.running,
    vms_stopped: totals.vms.stopped,
    vms_other: totals.vms.other,
    cpu_reserved: totals.cpu.reserved,
    mem_reserved: totals.mem.reserved,
    disk_reserved: totals.disk.reserved,
  };
}

export function fleetRoutes(app: ControllerApp, ctx: ControllerContext): void {
  app.get("/api/vms/:id", { schema: { params: VmIdParams, response: { 200: CONTROLLER_ANSWERS.vm } } }, async (request) => {
    const vm = await ctx.store.getVm(request.params.id);
    return ttOk(fleetVmView(vm, await ctx.store.findHost(vm.hostId)));
  });

  // What each host last reported (TTstack's controller asks every online host at once: the heartbeats here keep that fresh).
  app.get("/api/images", { schema: { response: { 200: CONTROLLER_ANSWERS.images } } }, async () => {
    const images: FleetImage[] = [];
    for (const host of await ctx.store.listHosts()) {
      if (host.state !== "online") continue;
      for (const name of host.info?.images ?? []) images.push({ name, host_id: host.id });
    }
    return ttOk(images.sort((a, b) => a.name.localeCompare(b.name) || a.host_id.localeCompare(b.host_id)));
  });

  app.get("/api/status", { schema: { response: { 200: CONTROLLER_ANSWERS.status } } }, async () => ttOk(fleetStatusView(await ctx.store.fleetStatus())));
}
