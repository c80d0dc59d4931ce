// Who may call what, decided once per request on the route the router matched (request.routeOptions), never
// on the raw URL: the router decodes percent-escapes, strips an absolute-form target's scheme and host and
// ignores a trailing slash, so any check on `request.url` can be walked around. Default deny: a route needs
// the token unless it declares otherwise in its options (`config: { access: "public" }`), and a public
// route must also be in PUBLIC_ROUTES, the one list that tests and docs read. A path no route matched is
// answered 401 without a valid token (what exists is not revealed), 404 with one. WebSocket upgrades are
// routed by fastify like any request, so they meet the same hook.
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from "fastify";
import { CorralError, quote } from "../protocol/errors.ts";
import { bearerToken, tokensMatch } from "./auth.ts";
import { errorBodyIn, wireOf, type UnmatchedWire } from "./wire.ts";

/**
 * `token`: `Authorization: Bearer TOKEN` (the default for any route that says nothing). `token-or-query`: the
 * same, or `?token=TOKEN` (a browser cannot set headers on a WebSocket). `public`: anyone.
 */
export type RouteAccess = "public" | "token" | "token-or-query";

declare module "fastify" {
  interface FastifyContextConfig {
    /** Who may call the route (src/http/access.ts); absent means "token". */
    access?: RouteAccess;
  }
}

/**
 * Every route anyone may call without a token, per server, as "METHOD /path" (the HEAD twin of a GET route
 * follows it). docs/api.md and docs/controller.md list the same; test/integration/access.test.ts checks
 * both servers against it. Deliberately not here: /openapi.json, which names the version and every route
 * (Kubernetes' API server also keeps its discovery and OpenAPI documents behind authentication).
 */
export const PUBLIC_ROUTES = {
  /** Liveness. */
  daemon: ["GET /healthz"],
  /**
   * Liveness (Corral's, and Virtumancer's `/api/v1/health`), and the dashboard's files and its client-side
   * pages (they hold no data; the API they call needs the key).
   */
  controller: ["GET /healthz", "GET /api/v1/health", "GET /", "GET /*"],
} as const satisfies Record<string, readonly string[]>;

export type ServerRole = keyof typeof PUBLIC_ROUTES;

export interface AccessOptions {
  role: ServerRole;
  /** The token every non-public route needs; undefined turns checking off (every route is open). */
  token: string | undefined;
  /** What the 401 asks for: "token" (daemon) or "API key" (controller). */
  credential: string;
  /** False while the server cannot serve yet: every route but the public ones answers 503. */
  isReady?: () => boolean;
  /** The wire of paths no route matched (src/http/wire.ts): their 401 and 404 are answered in it. */
  unmatchedWire?: UnmatchedWire;
}

/** "GET /healthz" for a route's method and URL (a HEAD route is named by its GET). */
export function routeKey(method: string, url: string): string {
  return `${method === "HEAD" ? "GET" : method} ${url}`;
}

function declaredAccess(config: unknown): RouteAccess {
  const access = (config as { access?: unknown } | undefined)?.access;
  return access === "public" || access === "token-or-query" ? access : "token";
}

/** The access a matched request's route declared; a request no route matched needs the token. */
export function accessOf(request: FastifyRequest): RouteAccess {
  return request.is404 ? "token" : declaredAccess(request.routeOptions.config);
}

function queryToken(request: FastifyRequest): string | undefined {
  const value = (request.query as Record<string, unknown> | undefined)?.token;
  return typeof value === "string" ? value : undefined;
}

export class AccessControl {
  /** Requests that proved the token (or came while checking is off). */
  private readonly authenticated = new WeakSet<FastifyRequest>();
  private readonly publicRoutes: ReadonlySet<string>;
  private readonly declaredPublic = new Set<string>();

  constructor(private readonly options: AccessOptions) {
    this.publicRoutes = new Set(PUBLIC_ROUTES[options.role]);
  }

  get unmatchedWire(): UnmatchedWire | undefined {
    return this.options.unmatchedWire;
  }

  /** Whether `request` carried the token in a form its route accepts. */
  presentsToken(request: FastifyRequest, access: RouteAccess): boolean {
    const token = this.options.token;
    if (token === undefined) return true;
    let presented = bearerToken(request.headers.authorization);
    if (presented === undefined && access === "token-or-query") presented = queryToken(request);
    return presented !== undefined && tokensMatch(presented, token);
  }

  isAuthenticated(request: FastifyRequest): boolean {
    return this.authenticated.has(request);
  }

  unauthorized(): CorralError {
    return new CorralError("unauthorized", `Missing or wrong ${this.options.credential}: send Authorization: Bearer ${this.options.credential === "token" ? "TOKEN" : "KEY"}`);
  }

  /** The one decision: undefined lets the request through, an error is the answer. */
  decide(request: FastifyRequest): CorralError | undefined {
    const access = accessOf(request);
    // A public route proves nothing, but a caller that sent the token is still known (its 404s are 404s).
    const proved = this.presentsToken(request, access === "public" ? "token" : access);
    if (proved) this.authenticated.add(request);
    if (access === "public") return undefined;
    if (!proved) return this.unauthorized();
    if (this.options.isReady && !this.options.isReady()) {
      return new CorralError("unavailable", `The ${this.options.role} is starting: try again in a moment`);
    }
    return undefined;
  }

  /** A route that declares itself public must be on the list, so that no route becomes public by accident. */
  checkRoute(route: RouteOptions): void {
    if (declaredAccess(route.config) !== "public") return;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      const key = routeKey(method, route.url);
      if (!this.publicRoutes.has(key)) {
        throw new Error(
          `The route ${JSON.stringify(key)} declares access "public" but is not in PUBLIC_ROUTES.${this.options.role} (src/http/access.ts): add it there and to the docs, or drop the declaration`,
        );
      }
      this.declaredPublic.add(key);
    }
  }

  /** Once every route is in: each entry of the list must be a route that declares itself public. */
  checkList(): void {
    const missing = [...this.publicRoutes].filter((key) => !this.declaredPublic.has(key));
    if (missing.length > 0) {
      throw new Error(`PUBLIC_ROUTES.${this.options.role} names ${missing.map((k) => JSON.stringify(k)).join(", ")}, which no route declares public: fix the list or the route`);
    }
  }
}

/** Sends the refusal in the request's wire: its route's, or (`routed: false`) the one of paths no route served. */
async function answer(control: AccessControl, request: FastifyRequest, reply: FastifyReply, error: CorralError, options: { routed: boolean } = { routed: true }): Promise<void> {
  if (error.code === "unauthorized") reply.header("www-authenticate", 'Bearer realm="corral"');
  if (error.code === "unavailable") reply.header("retry-after", "1");
  const wire = wireOf(request, control.unmatchedWire, options);
  await reply.code(error.status).type("application/json").send(errorBodyIn(wire, error.toBody()));
}

/**
 * Installs the decision as the app's first onRequest hook (before any route or plugin is registered), the
 * answer for paths no route matched, and the check of public declarations against PUBLIC_ROUTES.
 */
export function installAccessControl(app: FastifyInstance, options: AccessOptions | AccessControl): AccessControl {
  const control = options instanceof AccessControl ? options : new AccessControl(options);
  app.addHook("onRoute", (route) => control.checkRoute(route));
  app.addHook("onReady", async () => control.checkList());
  app.addHook("onRequest", async (request, reply) => {
    const refusal = control.decide(request);
    if (refusal) await answer(control, request, reply, refusal);
  });
  // Reached by a path no route matched (already refused above without the token), and by a public route
  // that found nothing to serve (the dashboard's fallback): that one must not reveal what exists either.
  app.setNotFoundHandler(async (request, reply) => {
    const unrouted = { routed: false };
    if (!control.isAuthenticated(request)) return answer(control, request, reply, control.unauthorized(), unrouted);
    return answer(control, request, reply, new CorralError("not_found", `No route for ${request.method} ${request.url.split("?")[0]}`), unrouted);
  });
  return control;
}

/** How long a path parameter may be before the router gives up on it (fastify's default is 100). */
export const MAX_PARAM_LENGTH = 1024;

/**
 * fastify's `frameworkErrors`: a path the router cannot even decode (a bad percent-escape) or whose
 * parameter is too long fails before any route or hook. Still the same decision: 401 without the token,
 * then a 400 in the catalogue's shape.
 */
export function answerFrameworkError(control: AccessControl, error: { code?: string }, request: FastifyRequest, reply: FastifyReply): void {
  const unrouted = { routed: false };
  if (!control.presentsToken(request, "token")) return void answer(control, request, reply, control.unauthorized(), unrouted);
  const path = request.url.split("?")[0] ?? "";
  const message =
    error.code === "FST_ERR_MAX_PARAM_LENGTH"
      ? `Invalid path ${quote(path.length > 80 ? `${path.slice(0, 80)}…` : path)}: a part of it is longer than ${MAX_PARAM_LENGTH} characters`
      : `Invalid path ${quote(path)}: it is not valid percent-encoding`;
  void answer(control, request, reply, new CorralError("invalid_request", message), unrouted);
}
