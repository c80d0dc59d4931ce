// Virtumancer's API under /api/v1, as its web UI calls it (docs/virtumancer-wire-notes.md): GET /health
// (public), hosts (list, add with {id, uri}, delete, info in libvirt's units, connect, disconnect), a host's VMs with every field
// the UI reads, the five power routes (each 204), a VM's hardware in libvirt's shape and its live stats.
// Errors are written as Virtumancer's Go handlers write them (text/plain, src/http/text-errors.ts), with the
// catalogue's status. The seed document's routes stay on /api (hosts.ts, host-vms.ts).
import { Type } from "@sinclair/typebox";
import { installTextErrors } from "../../http/text-errors.ts";
import { HostParams, HostVmParams } from "../../protocol/controller.ts";
import { V1_POWER_ACTIONS, V1AddHostSchema, V1HardwareSchema, V1HostInfoSchema, V1HostSchema, V1StatsSchema, V1VmSchema, VIRTUMANCER_PREFIX } from "../../protocol/virtumancer.ts";
import type { ControllerApp, ControllerContext } from "../context.ts";
import { powerVm, vmHardware, vmStats } from "../host-vm-calls.ts";
import { v1Hardware, v1Host, v1HostInfo, v1Vm } from "../virtumancer-views.ts";

const tags = ["Virtumancer (/api/v1)"];

export async function virtumancerRoutes(app: ControllerApp, ctx: ControllerContext): Promise<void> {
  await app.register(
    async (plugin) => {
      installTextErrors(plugin);
      const scope = plugin as unknown as ControllerApp;

      // Liveness, as Virtumancer answers it; like /healthz it reveals nothing, so it needs no key.
      scope.get("/health", { config: { access: "public" }, schema: { tags, response: { 200: Type.Object({ ok: Type.Boolean() }) } } }, async () => ({ ok: true }));

      scope.get("/hosts", { schema: { tags, response: { 200: Type.Array(V1HostSchema) } } }, async () => (await ctx.hosts.list()).map(v1Host));

      scope.post("/hosts", { schema: { tags, body: V1AddHostSchema, response: { 201: V1HostSchema } } }, async (request, reply) => {
        const { id, uri, token } = request.body;
        // An empty id is no id, as for Virtumancer (which then makes one up): the daemon's own is used.
        const host = await ctx.hosts.register({ uri, ...(id ? { id } : {}), ...(token === undefined ? {} : { token }) });
        return reply.code(201).send(v1Host(host));
      });

      scope.delete("/hosts/:id", { schema: { tags, params: HostParams } }, async (request, reply) => {
        await ctx.hosts.remove(request.params.id);
        return reply.code(204).send();
      });

      // Virtumancer's later routes (7ac184f): stop and resume talking to a host (host-connections.ts).
      scope.post("/hosts/:id/connect", { schema: { tags, params: HostParams } }, async (request, reply) => {
        await ctx.connections.connect(request.params.id);
        return reply.code(204).send();
      });

      scope.post("/hosts/:id/disconnect", { schema: { tags, params: HostParams } }, async (request, reply) => {
        await ctx.connections.disconnect(request.params.id);
        return reply.code(204).send();
      });

      scope.get("/hosts/:id/info", { schema: { tags, params: HostParams, response: { 200: V1HostInfoSchema } } }, async (request) =>
        v1HostInfo(await ctx.store.getHost(request.params.id)),
      );

      scope.get("/hosts/:id/vms", { schema: { tags, params: HostParams, response: { 200: Type.Array(V1VmSchema) } } }, async (request) => {
        const host = await ctx.store.getHost(request.params.id);
        const now = new Date();
        return host.vms.map((vm, position) => v1Vm(host.id, vm, position, now));
      });

      for (const action of V1_POWER_ACTIONS) {
        scope.post(`/hosts/:hostId/vms/:vmName/${action}`, { schema: { tags, params: HostVmParams } }, async (request, reply) => {
          await powerVm(ctx, request.params.hostId, request.params.vmName, action);
          return reply.code(204).send();
        });
      }

      scope.get("/hosts/:hostId/vms/:vmName/hardware", { schema: { tags, params: HostVmParams, response: { 200: V1HardwareSchema } } }, async (request) =>
        v1Hardware(await vmHardware(ctx, request.params.hostId, request.params.vmName)),
      );

      scope.get("/hosts/:hostId/vms/:vmName/stats", { schema: { tags, params: HostVmParams, response: { 200: V1StatsSchema } } }, async (request) =>
        vmStats(ctx, request.params.hostId, request.params.vmName),
      );
    },
    { prefix: VIRTUMANCER_PREFIX },
  );
}
