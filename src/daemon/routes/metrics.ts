// GET /metrics: Prometheus text format. Every answered request is counted by its route template (not its
// URL, so hostnames do not explode the label set: src/http/request-timing.ts).
import { installRequestTiming } from "../../http/request-timing.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";

export function metricsRoutes(app: DaemonApp, ctx: DaemonContext): void {
  const { metrics } = ctx;
  installRequestTiming(app, (served) => metrics.requestServed(served.method, served.route, served.status, served.seconds));
  app.get("/metrics", async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
}
