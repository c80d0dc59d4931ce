// Entry point of the guest agent: serves the host over the virtio-serial port named corral.agent.
// Each feature registers its routes on the router here.
import { AGENT_PORT_NAME, AGENT_VERSION } from "../protocol/agent.ts";
import { AgentServer } from "./agent-server.ts";
import { registerCoreRoutes } from "./core-routes.ts";
import { registerFileRoutes } from "./files/index.ts";
import { IdentityState } from "./identity.ts";
import { guestNative } from "./native.ts";
import { JobRegistry } from "./jobs/job-registry.ts";
import { registerJobRoutes } from "./jobs/job-routes.ts";
import { AgentRouter } from "./router.ts";
import { GuestSecrets, registerSecretRoutes } from "./secrets.ts";
import { registerStatsRoutes } from "./stats.ts";
import { registerShellAndForwardRoutes } from "./shell-forward-routes.ts";
import { findPortDevice, VirtioPort } from "./virtio-port.ts";

function log(line: string): void {
  process.stdout.write(`corral-agent: ${line}\n`);
}

async function waitForPort(): Promise<string> {
  for (let delay = 10; ; delay = Math.min(delay * 2, 1000)) {
    const device = findPortDevice(AGENT_PORT_NAME);
    if (device) return device;
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

// The agent is the VM's lifeline (if it exits, the VM stops): log unexpected errors, never die of them.
process.on("uncaughtException", (err) => log(`unexpected error: ${err.stack ?? err.message}`));
process.on("unhandledRejection", (err) => log(`unexpected rejection: ${String(err)}`));

// Loaded now, not at the first identity: in a template snapshot the addon is then already in every clone.
const native = guestNative();
const identity = new IdentityState(undefined, log);
const router = new AgentRouter();
registerCoreRoutes(router, identity);
registerStatsRoutes(router);
registerJobRoutes(router, new JobRegistry());
registerSecretRoutes(router, new GuestSecrets());
registerFileRoutes(router);
registerShellAndForwardRoutes(router);

const server = new AgentServer(router);
const device = await waitForPort();
const port = new VirtioPort(device, (connection) => server.serve(connection), native);
log(`${AGENT_VERSION} serving on ${device} (${port.transport})`);
if (port.relayFailure) log(`the port relay did not start, using the thread pool: ${port.relayFailure.message}`);
