// The controller's WebSocket routes, /ws and the VM shell, in one encapsulated scope with
// @fastify/websocket: each registration of the plugin listens to the server's "upgrade" event, so two of
// them would route every upgrade twice.
import websocketPlugin from "@fastify/websocket";
import { MAX_FRAME_PAYLOAD } from "../protocol/shell.ts";
import { closeAllClients, closeRefusedUpgrades } from "../http/ws-server.ts";
import type { ControllerApp, ControllerContext } from "./context.ts";
import { vmShellRoute } from "./routes/vm-console.ts";

/** The largest message accepted: one shell frame with its header (/ws checks its own, smaller, limit). */
const MAX_MESSAGE_BYTES = MAX_FRAME_PAYLOAD + 5;

export async function installWebSockets(app: ControllerApp, ctx: ControllerContext): Promise<void> {
  closeRefusedUpgrades(app);
  await app.register(async (scope) => {
    await scope.register(websocketPlugin, {
      options: { maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false },
      preClose: async () => {
        ctx.live.close();
        await closeAllClients(scope.websocketServer.clients, "The controller is shutting down");
      },
    });
    const typed = scope as ControllerApp;
    ctx.live.route(typed);
    vmShellRoute(typed, ctx);
  });
}
