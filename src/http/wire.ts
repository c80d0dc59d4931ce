// Which wire a request is answered in, so that every answer of a route (its errors from the shared error
// handler, a 401 or 503 from access control, a 413 or a 408) has the shape its clients read. Corral's own
// (and Slicer's, and Virtumancer's) error body is `{"error", "code"}`; TTstack's clients read every answer as
// its envelope `{ok, data?, error?}` (docs/ttstack-wire-notes.md §2), errors included, so a route set that
// speaks TTstack's wire declares it (`speaksTTstack`) and its errors become `{ok: false, error, code}` (the
// code is Corral's, beside TTstack's fields: serde ignores it). A path no route matched is answered in the
// wire its server gives such paths by prefix (AppBaseOptions.unmatchedWire): what a TTstack client that
// mistyped a path can still read.
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { ErrorBody } from "../protocol/errors.ts";

export type Wire = "corral" | "ttstack";

declare module "fastify" {
  interface FastifyContextConfig {
    /** The shape of the route's answers, errors included (src/http/wire.ts); absent means "corral". */
    wire?: Wire;
  }
}

/** The wire of a path no route matched, by its path (without the query). */
export type UnmatchedWire = (path: string) => Wire;

/** The wire a request is answered in: its route's, or for a path no route served, its server's rule. */
export function wireOf(request: FastifyRequest, unmatched: UnmatchedWire | undefined, options: { routed: boolean } = { routed: true }): Wire {
  if (options.routed && !request.is404) {
    const declared = (request.routeOptions?.config as { wire?: unknown } | undefined)?.wire;
    if (declared === "ttstack" || declared === "corral") return declared;
  }
  return unmatched?.(request.url.split("?")[0] ?? "/") ?? "corral";
}

/** An error body in `wire`'s shape. */
export function errorBodyIn(wire: Wire, body: ErrorBody): ErrorBody | { ok: false; error: string; code: string } {
  return wire === "ttstack" ? { ok: false, error: body.error, code: body.code } : body;
}

/**
 * Registers a route set in its own scope where every route declares TTstack's wire. The set's routes send
 * their answers in the envelope themselves (src/protocol/ttstack.ts, `ttOk`); this makes the shared error
 * handler and access control answer their errors in it too.
 */
export async function speaksTTstack<App extends FastifyInstance>(app: App, register: (scope: App) => void): Promise<void> {
  await app.register(async (scope) => {
    scope.addHook("onRoute", (route) => {
      route.config = { ...(route.config ?? {}), wire: "ttstack" };
    });
    register(scope as unknown as App);
  });
}
