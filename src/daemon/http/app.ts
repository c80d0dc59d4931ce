// Builds the daemon's HTTP application: parsers, auth, error handling and every route.
import swagger from "@fastify/swagger";
import Fastify, { LogController, type FastifyBaseLogger } from "fastify";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { Logger } from "../../util/log.ts";
import { ROUTE_SETS } from "../routes/index.ts";
import { installAuth } from "../../http/auth.ts";
import { installJsonBodies, JSON_BODY_LIMIT } from "../../http/body-parsers.ts";
import type { DaemonApp, DaemonContext } from "./context.ts";
import { installErrorHandling } from "../../http/error-handler.ts";
import { installRouteTable } from "../../http/route-table.ts";
import { installValidators } from "../../http/validators.ts";

/** Routes anyone may call: liveness only. */
export const OPEN_PATHS = ["/healthz"] as const;

/**
 * Slicer's Go SDK escapes the "?" of a node-list filter into the path (`/nodes%3Ftag=x`); put it back so
 * the request reaches its route with its query.
 */
export function repairEscapedQuery(url: string): string {
  if (url.includes("?")) return url;
  const at = url.search(/%3f/i);
  return at < 0 ? url : `${url.slice(0, at)}?${url.slice(at + 3)}`;
}

export interface AppOptions {
  token: string | undefined;
  log: Logger;
  /** False while the daemon is still recovering VMs: requests other than liveness get 503. */
  isReady?: () => boolean;
}

export async function buildDaemonApp(ctx: DaemonContext, options: AppOptions): Promise<DaemonApp> {
  const app = Fastify({
    loggerInstance: options.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: JSON_BODY_LIMIT,
    routerOptions: { ignoreTrailingSlash: true },
    rewriteUrl: (request) => repairEscapedQuery(request.url ?? "/"),
    forceCloseConnections: true,
  }).withTypeProvider<TypeBoxTypeProvider>();
  installRouteTable(app);
  installValidators(app);
  installErrorHandling(app);
  installJsonBodies(app);
  const isReady = options.isReady;
  if (isReady) {
    app.addHook("onRequest", async (request, reply) => {
      if (isReady() || OPEN_PATHS.some((p) => request.url.split("?")[0] === p)) return;
      await reply.code(503).header("retry-after", "1").send({ error: "The daemon is starting: try again in a moment", code: "unavailable" });
    });
  }
  if (options.token !== undefined) installAuth(app, options.token, OPEN_PATHS);
  // Before any route: the OpenAPI document is collected from the routes' schemas as they are added.
  await app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: { title: "Corral host daemon", description: "Slicer-compatible API of a Corral host daemon", version: ctx.version },
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
  });
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  for (const routes of ROUTE_SETS) routes(app, ctx);
  return app;
}
