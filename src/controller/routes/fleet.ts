// Fleet-wide reads (TTstack's controller API): GET /api/vms/ID, GET /api/images (every image, with the
// hosts that have it), GET /api/status (totals).
import { Type } from "@sinclair/typebox";
import { FleetImageSchema, FleetStatusSchema, FleetVmSchema, VmIdParams } from "../../protocol/controller.ts";
import type { ControllerApp, ControllerContext } from "../context.ts";
import { fleetVmView } from "../env-views.ts";

export function fleetRoutes(app: ControllerApp, ctx: ControllerContext): void {
  app.get("/api/vms/:id", { schema: { params: VmIdParams, response: { 200: FleetVmSchema } } }, async (request) => {
    const vm = await ctx.store.getVm(request.params.id);
    return fleetVmView(vm, await ctx.store.findHost(vm.hostId));
  });

  app.get("/api/images", { schema: { response: { 200: Type.Array(FleetImageSchema) } } }, async () => {
    const byName = new Map<string, string[]>();
    for (const host of await ctx.store.listHosts()) {
      for (const image of host.info?.images ?? []) byName.set(image, [...(byName.get(image) ?? []), host.id]);
    }
    return [...byName.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, hosts]) => ({ name, hosts }));
  });

  app.get("/api/status", { schema: { response: { 200: FleetStatusSchema } } }, async () => ctx.store.fleetStatus());
}
