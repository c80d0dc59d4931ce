// Every route an app registers, as its router will match them: method, URL pattern, declared access, and
// whether it is a WebSocket, its schemas. Collected by an onRoute hook installed before any route, so that
// nothing added later (encapsulated scopes, plugins, the HEAD twin fastify adds to each GET) is missed. The
// access test and the fuzz test read it; nothing decides on it.
import type { FastifyInstance, FastifySchema } from "fastify";
import type { RouteAccess } from "./access.ts";

export interface RouteEntry {
  method: string;
  url: string;
  access: RouteAccess;
  websocket: boolean;
  /** The route's schemas (params, querystring, body): what a fuzzer needs to aim past the first check. */
  schema: FastifySchema | undefined;
}

declare module "fastify" {
  interface FastifyInstance {
    /** Every route registered so far (src/http/route-table.ts). */
    readonly routeTable: readonly RouteEntry[];
  }
}

export function installRouteTable(app: FastifyInstance): void {
  const entries: RouteEntry[] = [];
  app.decorate("routeTable", { getter: () => entries });
  app.addHook("onRoute", (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const access = (route.config as { access?: RouteAccess } | undefined)?.access ?? "token";
    const websocket = Boolean((route as { websocket?: boolean }).websocket || (route as { wsHandler?: unknown }).wsHandler);
    for (const method of methods) entries.push({ method, url: route.url, access, websocket: websocket && method === "GET", schema: route.schema });
  });
}
