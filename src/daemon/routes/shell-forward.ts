// The daemon's WebSocket routes, shell and forward, in one encapsulated scope with @fastify/websocket.
// The plugin is registered once: each registration listens to the server's "upgrade" event, so two of them
// would route every upgrade twice. The unix socket listener hands its upgrades to the same server.
import websocketPlugin from "@fastify/websocket";
import type { WebSocket } from "ws";
import { CLOSE_CODE, MAX_FRAME_PAYLOAD } from "../../protocol/shell.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import { forwardRoute } from "./forward.ts";
import { shellRoute } from "./shell.ts";

/** The largest WebSocket message accepted: one shell frame with its header, or a forwarded chunk. */
const MAX_MESSAGE_BYTES = MAX_FRAME_PAYLOAD + 5;
/** On daemon stop, how long clients get to answer the close before their sockets are destroyed. */
const CLOSE_WAIT_MS = 1000;

async function closeAll(clients: Iterable<WebSocket>): Promise<void> {
  const open = [...clients];
  const closed = open.map((ws) => new Promise<void>((resolve) => (ws.readyState === ws.CLOSED ? resolve() : ws.once("close", () => resolve()))));
  for (const ws of open) ws.close(CLOSE_CODE.goingAway, "The daemon is shutting down");
  const timer = setTimeout(() => open.forEach((ws) => ws.terminate()), CLOSE_WAIT_MS);
  await Promise.all(closed);
  clearTimeout(timer);
}

/**
 * With the plugin listening, every upgrade request is routed through fastify, also those answered with an
 * HTTP error (auth, a route that is not a WebSocket, 404). Their socket has no HTTP parser any more, so
 * nothing would close it after the answer: it would stay half-open and hold up the daemon's stop. The
 * plugin closes it only for refusals made after its own onRequest hook; this closes all of them. (Accepted
 * upgrades are hijacked and never reach onResponse.)
 */
function closeRefusedUpgrades(app: DaemonApp): void {
  app.addHook("onResponse", async (request) => {
    // Node's parser marks the requests it emitted as "upgrade" (not in @types/node).
    const upgraded = (request.raw as { upgrade?: boolean }).upgrade === true;
    if (upgraded && !request.raw.socket.destroyed) request.raw.socket.destroy();
  });
}

export function shellAndForwardRoutes(app: DaemonApp, ctx: DaemonContext): void {
  closeRefusedUpgrades(app);
  app.register(async (scope) => {
    await scope.register(websocketPlugin, {
      options: { maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false },
      async preClose() {
        await closeAll(scope.websocketServer.clients);
      },
    });
    const typed = scope as DaemonApp;
    shellRoute(typed, ctx);
    forwardRoute(typed, ctx);
  });
}
