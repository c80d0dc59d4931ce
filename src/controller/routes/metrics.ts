// GET /metrics: the controller's metrics in Prometheus text format (src/controller/metrics.ts). Behind the
// API key, as the daemon's: they reveal the fleet's size and shape.
import type { ControllerApp, ControllerContext } from "../context.ts";

export function metricsRoute(app: ControllerApp, ctx: ControllerContext): void {
  app.get("/metrics", { schema: { hide: true } }, async (_request, reply) => reply.type(ctx.metrics.contentType).send(await ctx.metrics.scrape()));
}
