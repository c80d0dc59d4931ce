// The controller's HTTP application: the shared base (src/http/app-base.ts: parsing, validation, error
// bodies, the API key on every route but those in PUBLIC_ROUTES.controller) and the controller's routes.
import { createAppBase } from "../http/app-base.ts";
import type { RequestDeadlines } from "../http/deadlines.ts";
import type { Logger } from "../util/log.ts";
import type { ControllerApp, ControllerContext } from "./context.ts";
import { dashboardRoutes } from "./routes/dashboard.ts";
import { envRoutes } from "./routes/envs.ts";
import { fleetRoutes } from "./routes/fleet.ts";
import { hostVmRoutes } from "./routes/host-vms.ts";
import { hostRoutes } from "./routes/hosts.ts";
import { vmLogsRoute } from "./routes/vm-console.ts";
import { virtumancerRoutes } from "./routes/virtumancer.ts";
import { installWebSockets } from "./websockets.ts";

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
    openapi: { title: "Corral fleet controller", description: "TTstack's controller API and Virtumancer's API over Corral daemons", version: ctx.version },
  });
  app.get("/healthz", { schema: { hide: true }, config: { access: "public" } }, async () => ({ status: "ok", leader: ctx.isLeader(), backend: ctx.store.backend, ...ctx.live.counts() }));
  await installWebSockets(app, ctx);
  hostRoutes(app, ctx);
  hostVmRoutes(app, ctx);
  vmLogsRoute(app, ctx);
  envRoutes(app, ctx);
  fleetRoutes(app, ctx);
  await virtumancerRoutes(app, ctx);
  dashboardRoutes(app, ctx);
  return app;
}
