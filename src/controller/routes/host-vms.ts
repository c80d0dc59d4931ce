// Virtumancer's VM routes as the seed document has them: GET /api/hosts/ID/vms (every VM the host last
// reported, from the controller's cache), GET /api/hosts/HOST/vms/NAME/hardware (fresh from the host), POST
// /api/hosts/HOST/vms/NAME/action with start, shutdown, reboot, destroy (power off without flushing) or reset
// (hard reset) -> 204. Virtumancer's own wire, under /api/v1, is in virtumancer.ts.
import { Type } from "@sinclair/typebox";
import { HostParams, HostVmHardwareSchema, HostVmParams, HostVmSchema, libvirtState, VmActionSchema, type VmAction } from "../../protocol/controller.ts";
import type { V1PowerAction } from "../../protocol/virtumancer.ts";
import type { ControllerApp, ControllerContext } from "../context.ts";
import { reportedHealth } from "../env-views.ts";
import { powerVm, vmHardware } from "../host-vm-calls.ts";

const MiB = 1024 * 1024;

/** The seed's action names for Virtumancer's power routes. */
const SEED_ACTIONS: Record<VmAction, V1PowerAction> = { start: "start", shutdown: "shutdown", reboot: "reboot", destroy: "forceoff", reset: "forcereset" };

export function hostVmRoutes(app: ControllerApp, ctx: ControllerContext): void {
  app.get("/api/hosts/:id/vms", { schema: { params: HostParams, response: { 200: Type.Array(HostVmSchema) } } }, async (request) => {
    const host = await ctx.store.getHost(request.params.id);
    return host.vms.map((vm, index) => ({
      db_id: index + 1,
      name: vm.id,
      description: vm.env_id ? `environment ${vm.env_id}` : `host group ${vm.hostgroup}`,
      vcpu_count: vm.cpu,
      memory_bytes: vm.mem * MiB,
      state: libvirtState(vm.state),
      graphics: { vnc: false, spice: false },
      status: vm.state,
      env_id: vm.env_id,
      ...reportedHealth(vm),
    }));
  });

  app.get("/api/hosts/:hostId/vms/:vmName/hardware", { schema: { params: HostVmParams, response: { 200: HostVmHardwareSchema } } }, async (request) =>
    vmHardware(ctx, request.params.hostId, request.params.vmName),
  );

  app.post("/api/hosts/:hostId/vms/:vmName/action", { schema: { params: HostVmParams, body: VmActionSchema } }, async (request, reply) => {
    await powerVm(ctx, request.params.hostId, request.params.vmName, SEED_ACTIONS[request.body.action]);
    return reply.code(204).send();
  });
}
