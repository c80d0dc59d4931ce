// Builds the daemon's HTTP application: the shared base (src/http/app-base.ts) and every route.
import type { Logger } from "../../util/log.ts";
import { createAppBase } from "../../http/app-base.ts";
import type { RequestDeadlines } from "../../http/deadlines.ts";
import { ROUTE_SETS, TTSTACK_ROUTE_SETS } from "../routes/index.ts";
import { speaksTTstack } from "../../http/wire.ts";
import type { DaemonApp, DaemonContext } from "./context.ts";

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
  deadlines?: Partial<RequestDeadlines>;
}

export async function buildDaemonApp(ctx: DaemonContext, options: AppOptions): Promise<DaemonApp> {
  const app = await createAppBase({
    role: "daemon",
    log: options.log,
    token: options.token,
    credential: "token",
    isReady: options.isReady,
    rewriteUrl: repairEscapedQuery,
    deadlines: options.deadlines,
    openapi: { title: "Corral host daemon", description: "Slicer-compatible API of a Corral host daemon, and TTstack's agent API under /api", version: ctx.version },
    // The daemon's /api/ paths are TTstack's agent API: a path there that no route serves still gets its envelope.
    unmatchedWire: (path) => (path === "/api" || path.startsWith("/api/") ? "ttstack" : "corral"),
  });
  for (const routes of ROUTE_SETS) routes(app, ctx);
  await speaksTTstack(app, (scope) => {
    for (const routes of TTSTACK_ROUTE_SETS) routes(scope, ctx);
  });
  return app;
}
