// What a server with @fastify/websocket needs around its routes (the daemon's and the controller's): one
// encapsulated scope for all of them, refused upgrades closed after their HTTP answer, and every client
// closed, with a deadline, when the server stops.
import websocketPlugin from "@fastify/websocket";
import type { FastifyInstance } from "fastify";
import type { WebSocket } from "ws";
import { CLOSE_CODE, MAX_FRAME_PAYLOAD } from "../protocol/shell.ts";

/** The largest message accepted: one shell frame with its header (a route may check its own, smaller, limit). */
const MAX_MESSAGE_BYTES = MAX_FRAME_PAYLOAD + 5;

export interface WebSocketScopeOptions {
  /** The close reason every client is sent when the server stops ("The daemon is shutting down"). */
  shutdownReason: string;
  /** Run when the server stops, before the clients are closed (e.g. to stop timers that write to them). */
  beforeClose?: () => void;
}

/**
 * Registers @fastify/websocket once, in one encapsulated scope, and the server's WebSocket routes in it: each
 * registration of the plugin listens to the server's "upgrade" event, so two of them would route every
 * upgrade twice. The registration is returned for the caller to await (or leave to fastify's start).
 */
export function installWebSocketScope<App extends FastifyInstance>(app: App, options: WebSocketScopeOptions, routes: (scope: App) => void): PromiseLike<unknown> {
  closeRefusedUpgrades(app);
  return app.register(async (scope) => {
    await scope.register(websocketPlugin, {
      options: { maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false },
      preClose: async () => {
        options.beforeClose?.();
        await closeAllClients(scope.websocketServer.clients, options.shutdownReason);
      },
    });
    routes(scope as App);
  });
}

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
