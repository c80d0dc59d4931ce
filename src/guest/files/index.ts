// File copy and filesystem features of the agent.
import type { AgentRouter } from "../router.ts";
import { registerCopyRoutes } from "./copy-routes.ts";
import { registerFsRoutes } from "./fs-routes.ts";
import { registerWatchRoute } from "./watch-route.ts";

export function registerFileRoutes(router: AgentRouter): void {
  registerCopyRoutes(router);
  registerFsRoutes(router);
  registerWatchRoute(router);
}
