// The agent's interactive routes: shells on a pty (/v1/shell) and forwarded connections (/v1/forward).
import { registerForwardRoutes } from "./forward.ts";
import { loadPtyAddon } from "./pty.ts";
import type { AgentRouter } from "./router.ts";
import { registerShellRoutes } from "./shell.ts";

export function registerShellAndForwardRoutes(router: AgentRouter): void {
  registerShellRoutes(router, () => loadPtyAddon());
  registerForwardRoutes(router);
}
