// Each answered request, named by the route that matched it, for the servers' /metrics: its pattern
// (`/api/envs/:id`), never the raw URL, so ids and junk paths cannot each make a series of their own. Upgraded
// WebSockets are hijacked and never reach onResponse: they are not timed.
import type { FastifyInstance } from "fastify";

export interface ServedRequest {
  method: string;
  /** The matched route's pattern; "unmatched" when no route matched. */
  route: string;
  status: number;
  seconds: number;
}

/** The route label of a request no route matched. */
export const UNMATCHED_ROUTE = "unmatched";

export function installRequestTiming(app: FastifyInstance, observe: (served: ServedRequest) => void): void {
  app.addHook("onResponse", async (request, reply) => {
    const route = request.is404 ? UNMATCHED_ROUTE : (request.routeOptions.url ?? UNMATCHED_ROUTE);
    observe({ method: request.method, route, status: reply.statusCode, seconds: reply.elapsedTime / 1000 });
  });
}

/** "2xx", "4xx": a status's class, the label a latency histogram can afford (a label per status would multiply its series). */
export function statusClass(status: number): string {
  return `${Math.floor(status / 100)}xx`;
}
