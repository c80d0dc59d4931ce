// Virtumancer's host and VM routes (seed 003, plain JSON, not TTstack's envelope): GET /api/hosts/ID/info,
// GET /api/hosts/ID/vms (every VM the host last reported, from the controller's
// cache), GET /api/hosts/HOST/vms/NAME/hardware (fresh from the host), POST /api/hosts/HOST/vms/NAME/action
// with start, shutdown, reboot, destroy (power off without flushing) or reset (hard reset) -> 204.
import { Type } from "@sinclair/typebox";
import { HostInfoViewSchema, HostParams, HostVmHardwareSchema, HostVmParams, HostVmSchema, libvirtState, VmActionSchema, type VmAction } from "../../protocol/controller.ts";
import type { ControllerApp, ControllerContext } from "../context.ts";
import { reportedHealth } from "../env-views.ts";
import { hostFailure, type HostLink } from "../host-link.ts";

const MiB = 1024 * 1024;

const ACTIONS: Record<VmAction, (link: HostLink, name: string) => Promise<unknown>> = {
  start: (link, name) => link.startVm(name),
  shutdown: (link, name) => link.stopVm(name),
  destroy: (link, name) => link.stopVm(name, { force: true }),
  reboot: (link, name) => link.rebootVm(name),
  reset: (link, name) => link.rebootVm(name, { force: true }),
};

export function hostVmRoutes(app: ControllerApp, ctx: ControllerContext): void {
  const link = async (hostId: string): Promise<HostLink> => ctx.links.forHost(await ctx.store.getHost(hostId));

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

  app.get("/api/hosts/:hostId/vms/:vmName/hardware", { schema: { params: HostVmParams, response: { 200: HostVmHardwareSchema } } }, async (request) => {
    const { hostId, vmName } = request.params;
    try {
      return (await (await link(hostId)).vm(vmName)).hardware;
    } catch (err) {
      throw hostFailure(hostId, err);
    }
  });

  app.post("/api/hosts/:hostId/vms/:vmName/action", { schema: { params: HostVmParams, body: VmActionSchema } }, async (request, reply) => {
    const { hostId, vmName } = request.params;
    const target = await link(hostId);
    try {
      await ACTIONS[request.body.action](target, vmName);
    } catch (err) {
      throw hostFailure(hostId, err);
    }
    // The host's list changed: refresh the cache now rather than at the next heartbeat.
    await ctx.refreshHost(hostId);
    return reply.code(204).send();
  });
}
