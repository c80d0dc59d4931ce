// What a server with @fastify/websocket needs around its routes (the daemon's and the controller's): refused
// upgrades closed after their HTTP answer, and every client closed, with a deadline, when the server stops.
import type { FastifyInstance } from "fastify";
import type { WebSocket } from "ws";
import { CLOSE_CODE } from "../protocol/shell.ts";

/** On stop, how long clients get to answer the close before their sockets are destroyed. */
const CLOSE_WAIT_MS = 1000;

/** Closes every client with "going away", then destroys those that did not answer in time. */
export async function closeAllClients(clients: Iterable<WebSocket>, reason: string): Promise<void> {
  const open = [...clients];
  const closed = open.map((ws) => new Promise<void>((resolve) => (ws.readyState === ws.CLOSED ? resolve() : ws.once("close", () => resolve()))));
  for (const ws of open) ws.close(CLOSE_CODE.goingAway, reason);
  const timer = setTimeout(() => {
    for (const ws of open) ws.terminate();
  }, CLOSE_WAIT_MS);
  await Promise.all(closed);
  clearTimeout(timer);
}

/**
 * With the plugin listening, every upgrade request is routed through fastify, also those answered with an
 * HTTP error (auth, a route that is not a WebSocket, 404). Their socket has no HTTP parser any more, so
 * nothing would close it after the answer: it would stay half-open and hold up the server's stop. The
 * plugin closes it only for refusals made after its own onRequest hook; this closes all of them. (Accepted
 * upgrades are hijacked and never reach onResponse.)
 */
export function closeRefusedUpgrades(app: FastifyInstance): void {
  app.addHook("onResponse", async (request) => {
    // Node's parser marks the requests it emitted as "upgrade" (not in @types/node).
    const upgraded = (request.raw as { upgrade?: boolean }).upgrade === true;
    if (upgraded && !request.raw.socket.destroyed) request.raw.socket.destroy();
  });
}
