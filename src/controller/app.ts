// The controller's HTTP application: the same parsing, validation and error bodies as the daemon's, the API
// key on /api/* and /ws (the dashboard's files and /healthz are open), the routes and /openapi.json.
import swagger from "@fastify/swagger";
import Fastify, { LogController, type FastifyBaseLogger } from "fastify";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { bearerToken, tokensMatch } from "../http/auth.ts";
import { installJsonBodies, JSON_BODY_LIMIT } from "../http/body-parsers.ts";
import { installErrorHandling } from "../http/error-handler.ts";
import { installRouteTable } from "../http/route-table.ts";
import { installValidators } from "../http/validators.ts";
import type { Logger } from "../util/log.ts";
import type { ControllerApp, ControllerContext } from "./context.ts";
import { dashboardRoutes } from "./routes/dashboard.ts";
import { envRoutes } from "./routes/envs.ts";
import { fleetRoutes } from "./routes/fleet.ts";
import { hostVmRoutes } from "./routes/host-vms.ts";
import { hostRoutes } from "./routes/hosts.ts";
import { vmLogsRoute } from "./routes/vm-console.ts";
import { installWebSockets } from "./websockets.ts";

/** Paths that need the API key when the controller has one. */
function isProtected(path: string): boolean {
  return path === "/ws" || path.startsWith("/api/") || path === "/api" || path === "/openapi.json";
}

/** A VM's shell, a WebSocket the dashboard opens: like /ws, it may carry the key as `?token=KEY`. */
const SHELL_PATH = /^\/api\/hosts\/[^/]+\/vms\/[^/]+\/shell$/;

/**
 * `Authorization: Bearer KEY`; on /ws and a VM's shell also `?token=KEY`, since browsers cannot set headers on
 * a WebSocket.
 */
function installApiKey(app: ControllerApp, apiKey: string): void {
  app.addHook("onRequest", async (request, reply) => {
    const [path = "", query = ""] = request.url.split("?");
    if (!isProtected(path)) return;
    let presented = bearerToken(request.headers.authorization);
    if (presented === undefined && (path === "/ws" || SHELL_PATH.test(path))) presented = new URLSearchParams(query).get("token") ?? undefined;
    if (presented !== undefined && tokensMatch(presented, apiKey)) return;
    await reply.code(401).send({ error: "Missing or wrong API key: send Authorization: Bearer KEY", code: "unauthorized" });
  });
}

export async function buildControllerApp(ctx: ControllerContext, options: { apiKey: string | undefined; log: Logger }): Promise<ControllerApp> {
  const app = Fastify({
    loggerInstance: options.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: JSON_BODY_LIMIT,
    routerOptions: { ignoreTrailingSlash: true },
    forceCloseConnections: true,
  }).withTypeProvider<TypeBoxTypeProvider>();
  installRouteTable(app);
  installValidators(app);
  installErrorHandling(app);
  installJsonBodies(app);
  if (options.apiKey !== undefined) installApiKey(app, options.apiKey);
  await app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: { title: "Corral fleet controller", description: "TTstack's controller API and Virtumancer's API over Corral daemons", version: ctx.version },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
  });
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  app.get("/healthz", { schema: { hide: true } }, async () => ({ status: "ok", leader: ctx.isLeader(), backend: ctx.store.backend, ...ctx.live.counts() }));
  await installWebSockets(app, ctx);
  hostRoutes(app, ctx);
  hostVmRoutes(app, ctx);
  vmLogsRoute(app, ctx);
  envRoutes(app, ctx);
  fleetRoutes(app, ctx);
  dashboardRoutes(app, ctx);
  return app;
}
