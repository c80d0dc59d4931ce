// GET /metrics: Prometheus text format. Every answered request is counted by its route template (not its
// URL, so hostnames do not explode the label set).
import type { DaemonApp, DaemonContext } from "../http/context.ts";

export function metricsRoutes(app: DaemonApp, ctx: DaemonContext): void {
  const { metrics } = ctx;
  app.addHook("onResponse", async (request, reply) => {
    metrics.requestServed(request.method, request.routeOptions.url ?? "unmatched", reply.statusCode, reply.elapsedTime / 1000);
  });
  app.get("/metrics", async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
}
