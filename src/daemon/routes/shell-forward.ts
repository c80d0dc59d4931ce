// The daemon's WebSocket routes, shell and forward, in the one scope src/http/ws-server.ts gives them. The
// unix socket listener hands its upgrades to the same server.
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import { installWebSocketScope } from "../../http/ws-server.ts";
import { forwardRoute } from "./forward.ts";
import { shellRoute } from "./shell.ts";

export function shellAndForwardRoutes(app: DaemonApp, ctx: DaemonContext): void {
  void installWebSocketScope(app, { shutdownReason: "The daemon is shutting down" }, (scope) => {
    shellRoute(scope, ctx);
    forwardRoute(scope, ctx);
  });
}
