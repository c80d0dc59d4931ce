// Virtumancer's host and VM routes as the seed document has them (plain JSON, not TTstack's envelope):
// GET /api/hosts/ID/info, GET /api/hosts/ID/vms (every VM the host last reported, from the controller's
// cache), GET /api/hosts/HOST/vms/NAME/hardware (fresh from the host), POST /api/hosts/HOST/vms/NAME/action
// with start, shutdown, reboot, destroy (power off without flushing) or reset (hard reset) -> 204.
// Virtumancer's own wire, under /api/v1, is in virtumancer.ts.
import { Type } from "@sinclair/typebox";
import { HostInfoViewSchema, HostParams, HostVmHardwareSchema, HostVmParams, HostVmSchema, libvirtState, VmActionSchema, type VmAction } from "../../protocol/controller.ts";
import type { V1PowerAction } from "../../protocol/virtumancer.ts";
import type { ControllerApp, ControllerContext } from "../context.ts";
import { reportedHealth } from "../env-views.ts";
import { powerVm, vmHardware } from "../host-vm-calls.ts";
import { vmDescription } from "../virtumancer-views.ts";

const MiB = 1024 * 1024;

/** The seed's action names for Virtumancer's power routes. */
const SEED_ACTIONS: Record<VmAction, V1PowerAction> = { start: "start", shutdown: "shutdown", reboot: "reboot", destroy: "forceoff", reset: "forcereset" };

export function hostVmRoutes(app: ControllerApp, ctx: ControllerContext): void {
  app.get("/api/hosts/:id/info", { schema: { params: HostParams, response: { 200: HostInfoViewSchema } } }, async (request) => {
    const host = await ctx.hosts.get(request.params.id);
    const threads = host.info?.cpu_total ?? 0;
    const threadsPerCore = host.info?.threads_per_core ?? 1;
    return {
      hostname: host.hostname,
      cpu: threads,
      memory: (host.info?.mem_total ?? 0) * 1024 * 1024,
      cores: Math.max(1, Math.floor(threads / threadsPerCore)),
      threads: threadsPerCore,
    };
  });

  app.get("/api/hosts/:id/vms", { schema: { params: HostParams, response: { 200: Type.Array(HostVmSchema) } } }, async (request) => {
    const host = await ctx.store.getHost(request.params.id);
    return host.vms.map((vm, index) => ({
      db_id: index + 1,
      name: vm.id,
      description: vmDescription(vm),
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
