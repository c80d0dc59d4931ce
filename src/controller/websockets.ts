// The controller's WebSocket routes, /ws and the VM shell, in the one scope src/http/ws-server.ts gives them
// (/ws checks its own, smaller, message limit).
import { installWebSocketScope } from "../http/ws-server.ts";
import type { ControllerApp, ControllerContext } from "./context.ts";
import { vmShellRoute } from "./routes/vm-console.ts";

export async function installWebSockets(app: ControllerApp, ctx: ControllerContext): Promise<void> {
  await installWebSocketScope(app, { shutdownReason: "The controller is shutting down", beforeClose: () => ctx.live.close() }, (scope) => {
    ctx.live.route(scope);
    vmShellRoute(scope, ctx);
  });
}
