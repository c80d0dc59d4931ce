// The HTTP application both servers are built on, so that they cannot drift apart: fastify's options, the
// route table, request deadlines and malformed-HTTP answers, access control (the first decision on every
// request), validators, error bodies, JSON bodies and the OpenAPI document at /openapi.json. Each server then adds its own routes (daemon/http/app.ts,
// controller/app.ts).
import swagger from "@fastify/swagger";
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from "fastify";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { Logger } from "../util/log.ts";
import { AccessControl, answerFrameworkError, installAccessControl, MAX_PARAM_LENGTH, type ServerRole } from "./access.ts";
import { installJsonBodies, JSON_BODY_LIMIT } from "./body-parsers.ts";
import { clientErrorHandler } from "./client-errors.ts";
import { DEFAULT_DEADLINES, installBodyDeadlines, serverTimeouts, type RequestDeadlines } from "./deadlines.ts";
import { installErrorHandling } from "./error-handler.ts";
import { installRouteTable } from "./route-table.ts";
import { installValidators } from "./validators.ts";
import type { UnmatchedWire } from "./wire.ts";

export type CorralApp = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>;

export interface AppBaseOptions {
  role: ServerRole;
  log: Logger;
  /** The bearer token every non-public route needs; undefined: no checking. */
  token: string | undefined;
  /** How the 401 names the token: "token" (daemon) or "API key" (controller). */
  credential: string;
  /** While false, every non-public route answers 503 (the daemon recovering its VMs). */
  isReady?: () => boolean;
  /** Applied to each request's URL before routing (the daemon repairs Slicer's escaped "?"). */
  rewriteUrl?: (url: string) => string;
  openapi: { title: string; description: string; version: string };
  /** How long clients may take to send requests (DEFAULT_DEADLINES for what is not given). */
  deadlines?: Partial<RequestDeadlines>;
  /**
   * The wire paths no route matched are answered in, by path (src/http/wire.ts): TTstack's envelope under a
   * TTstack prefix. Routes declare their own (`speaksTTstack`); without this, Corral's error body.
   */
  unmatchedWire?: UnmatchedWire;
}

export async function createAppBase(options: AppBaseOptions): Promise<CorralApp> {
  const rewriteUrl = options.rewriteUrl;
  const deadlines = { ...DEFAULT_DEADLINES, ...options.deadlines };
  const access = new AccessControl({ role: options.role, token: options.token, credential: options.credential, isReady: options.isReady, unmatchedWire: options.unmatchedWire });
  const app = Fastify({
    loggerInstance: options.log as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: JSON_BODY_LIMIT,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: MAX_PARAM_LENGTH },
    frameworkErrors: (error, request, reply) => answerFrameworkError(access, error, request, reply),
    ...(rewriteUrl ? { rewriteUrl: (request: { url?: string }) => rewriteUrl(request.url ?? "/") } : {}),
    forceCloseConnections: true,
    http: serverTimeouts(deadlines),
    clientErrorHandler: clientErrorHandler(deadlines.headersMs),
  }).withTypeProvider<TypeBoxTypeProvider>();
  installRouteTable(app);
  // Before access control: a refused request's body is still timed while node reads it away.
  const bodyDeadlines = installBodyDeadlines(app, deadlines, options.unmatchedWire);
  installAccessControl(app, access);
  installValidators(app);
  installErrorHandling(app, { replaces: (request) => bodyDeadlines.expired(request), unmatchedWire: options.unmatchedWire });
  installJsonBodies(app);
  // Before any route: the OpenAPI document is collected from the routes' schemas as they are added.
  await app.register(swagger, {
    openapi: {
      openapi: "3.0.3",
      info: options.openapi,
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
      security: [{ bearer: [] }],
    },
  });
  // Behind the token (see PUBLIC_ROUTES in access.ts for why).
  app.get("/openapi.json", { schema: { hide: true } }, async () => app.swagger());
  return app;
}
