// Opening the agent side of a shell or a forwarded connection: one HTTP/2 stream each, full duplex (the
// request body goes to the guest while the response body comes back). The routes call these before they
// answer 101, so a stopped or paused VM, a missing shell or an unreachable target is known in time.
import type { ClientHttp2Stream } from "node:http2";
import { PassThrough } from "node:stream";
import { FORWARD_AGENT_PATH, FORWARD_TARGET_HEADER, UPSTREAM_UNREACHABLE, type ForwardTarget } from "../../protocol/forward.ts";
import { SHELL_AGENT_PATH, SHELL_SPEC_HEADER, type ShellSpec } from "../../protocol/shell.ts";
import { AgentError } from "../agent/agent-client.ts";
import type { VmManager } from "../vm/vm-manager.ts";
import { headerJson } from "../../protocol/agent.ts";

export interface AgentDuplex {
  /** Bytes to the guest (the request body). */
  toAgent: PassThrough;
  /** Bytes from the guest (the response body). */
  fromAgent: ClientHttp2Stream;
  /** Cuts the stream: a reset alone, so the guest never takes what was sent for a complete input. */
  cancel(): void;
}

export function openShell(manager: VmManager, hostname: string, spec: ShellSpec, signal: AbortSignal): Promise<AgentDuplex> {
  const toAgent = new PassThrough();
  return manager
    .withAgent(hostname, signal, (agent) => agent.call("POST", SHELL_AGENT_PATH, { headers: { [SHELL_SPEC_HEADER]: headerJson(spec) }, body: toAgent, signal }))
    .then((response) => ({ toAgent, fromAgent: response.stream, cancel: response.cancel }));
}

export type ForwardOpening = ({ connected: true } & AgentDuplex) | { connected: false; reason: string };

/**
 * Has the agent connect to `target`. A target that refuses or does not answer is not an error of the
 * request: it resolves with the reason, which the route sends as the WebSocket's close reason.
 */
export async function openForward(manager: VmManager, hostname: string, target: ForwardTarget, signal: AbortSignal): Promise<ForwardOpening> {
  const toAgent = new PassThrough();
  return manager.withAgent(hostname, signal, async (agent) => {
    try {
      const response = await agent.call("POST", FORWARD_AGENT_PATH, { headers: { [FORWARD_TARGET_HEADER]: headerJson(target) }, body: toAgent, signal });
      return { connected: true, toAgent, fromAgent: response.stream, cancel: response.cancel };
    } catch (err) {
      if (err instanceof AgentError && err.code === UPSTREAM_UNREACHABLE) return { connected: false, reason: err.message };
      throw err;
    }
  });
}
