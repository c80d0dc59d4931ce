// GET /healthz (open, for liveness checks) and GET /info (version, acceleration, images, templates, the wall
// between guests and this host's services, each host group's network).
import { Type } from "@sinclair/typebox";
import { InfoSchema } from "../../protocol/slicer.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import { groupNetworks } from "./network-fields.ts";

export function systemRoutes(app: DaemonApp, ctx: DaemonContext): void {
  app.get("/healthz", { config: { access: "public" }, schema: { response: { 200: Type.Object({ status: Type.String() }) } } }, async () => ({ status: "ok" }));

  app.get("/info", { schema: { response: { 200: InfoSchema } } }, async () => {
    const images = await ctx.images.list();
    return {
      version: ctx.version,
      git_commit: ctx.gitCommit,
      platform: "linux",
      arch: process.arch === "x64" ? "amd64" : process.arch,
      accel: ctx.accel.accel,
      accel_reason: ctx.accel.reason,
      accel_decided_at: ctx.accel.decided_at,
      images: images.map((i) => ({ name: i.name, version: i.version, kernel_release: i.kernel_release, created_at: i.created_at })),
      templates: ctx.templates.list(),
      host_isolation: ctx.isolation.info(ctx.manager.list()),
      network: {
        groups: groupNetworks(
          ctx.manager,
          ctx.manager.listedGroups().map((g) => g.group),
        ),
        tables: ctx.manager.networkInfo()?.tables ?? [],
        ip_forward: ctx.manager.networkInfo()?.ip_forward ?? false,
        vhost: ctx.manager.networkInfo()?.vhost ?? false,
      },
      pressure: ctx.manager.hostPressure(),
    };
  });
}
