// The daemon's WebSocket routes, shell and forward, in one encapsulated scope with @fastify/websocket.
// The plugin is registered once: each registration listens to the server's "upgrade" event, so two of them
// would route every upgrade twice. The unix socket listener hands its upgrades to the same server.
import websocketPlugin from "@fastify/websocket";
import { MAX_FRAME_PAYLOAD } from "../../protocol/shell.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import { closeAllClients, closeRefusedUpgrades } from "../../http/ws-server.ts";
import { forwardRoute } from "./forward.ts";
import { shellRoute } from "./shell.ts";

/** The largest WebSocket message accepted: one shell frame with its header, or a forwarded chunk. */
const MAX_MESSAGE_BYTES = MAX_FRAME_PAYLOAD + 5;

export function shellAndForwardRoutes(app: DaemonApp, ctx: DaemonContext): void {
  closeRefusedUpgrades(app);
  app.register(async (scope) => {
    await scope.register(websocketPlugin, {
      options: { maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false },
      async preClose() {
        await closeAllClients(scope.websocketServer.clients, "The daemon is shutting down");
      },
    });
    const typed = scope as DaemonApp;
    shellRoute(typed, ctx);
    forwardRoute(typed, ctx);
  });
}
