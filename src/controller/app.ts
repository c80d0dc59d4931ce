// The controller's HTTP application: the shared base (src/http/app-base.ts: parsing, validation, error
// bodies, the API key on every route but those in PUBLIC_ROUTES.controller) and the controller's routes.
import { createAppBase } from "../http/app-base.ts";
import { installRequestTiming } from "../http/request-timing.ts";
import { speaksTTstack, type Wire } from "../http/wire.ts";
import type { RequestDeadlines } from "../http/deadlines.ts";
import type { Logger } from "../util/log.ts";
import type { ControllerApp, ControllerContext } from "./context.ts";
import { dashboardRoutes } from "./routes/dashboard.ts";
import { envRoutes } from "./routes/envs.ts";
import { fleetRoutes } from "./routes/fleet.ts";
import { hostVmRoutes } from "./routes/host-vms.ts";
import { hostRoutes } from "./routes/hosts.ts";
import { metricsRoute } from "./routes/metrics.ts";
import { vmLogsRoute } from "./routes/vm-console.ts";
import { virtumancerRoutes } from "./routes/virtumancer.ts";
import { installWebSockets } from "./websockets.ts";

/**
 * Which wire a path no route matched is answered in: TTstack's envelope under /api/, where TTstack's clients
 * call, but Virtumancer's /api/v1/ (src/http/wire.ts).
 */
export function controllerUnmatchedWire(path: string): Wire {
  const underApi = path === "/api" || path.startsWith("/api/");
  const virtumancer = path === "/api/v1" || path.startsWith("/api/v1/");
  return underApi && !virtumancer ? "ttstack" : "corral";
}

export interface ControllerAppOptions {
  apiKey: string | undefined;
  log: Logger;
  deadlines?: Partial<RequestDeadlines>;
}

export async function buildControllerApp(ctx: ControllerContext, options: ControllerAppOptions): Promise<ControllerApp> {
  const app = await createAppBase({
    role: "controller",
    log: options.log,
    token: options.apiKey,
    credential: "API key",
    deadlines: options.deadlines,
    openapi: { title: "Corral fleet controller", description: "TTstack's controller API and Virtumancer's API over Corral daemons and TTstack agents", version: ctx.version },
    unmatchedWire: controllerUnmatchedWire,
  });
  installRequestTiming(app, (served) => ctx.metrics.requestServed(served));
  app.get("/healthz", { schema: { hide: true }, config: { access: "public" } }, async () => ({
    status: "ok",
    leader: ctx.isLeader(),
    backend: ctx.store.backend,
    ...ctx.live.counts(),
  }));
  await installWebSockets(app, ctx);
  // TTstack's controller routes: every answer in its envelope (src/http/wire.ts).
  await speaksTTstack(app, (scope) => {
    hostRoutes(scope, ctx);
    envRoutes(scope, ctx);
    fleetRoutes(scope, ctx);
  });
  hostVmRoutes(app, ctx);
  vmLogsRoute(app, ctx);
  await virtumancerRoutes(app, ctx);
  metricsRoute(app, ctx);
  dashboardRoutes(app, ctx);
  return app;
}
