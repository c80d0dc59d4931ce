// The live parts of one running VM incarnation: its machine (see src/engine/machine.ts), agent client, NIC
// and the agent's readiness.
import type { Machine } from "../../engine/index.ts";
import type { NetworkAttachment } from "../../net/attachment.ts";
import { AgentClient } from "../agent/agent-client.ts";
import { Readiness } from "./readiness.ts";
import { VmCondition } from "./vm-condition.ts";

export class VmRuntime {
  readonly agent: AgentClient;
  /** Is the agent connected with the VM's identity? (see readiness.ts) */
  readonly readiness: Readiness;
  /** Stopped by its disk? Does its agent answer? (see vm-condition.ts) */
  readonly condition = new VmCondition();

  constructor(
    readonly hostname: string,
    readonly incarnation: number,
    readonly machine: Machine,
    agent: string | AgentClient,
    /**
     * The machine's NIC as it was made for this incarnation; undefined for a VM re-attached after a daemon
     * restart until the network side (recovery) has found it again.
     */
    public attachment?: NetworkAttachment,
    /** Created by this launch (not relaunched, restored or re-attached): its first bring-up is fresh. */
    options: { created?: boolean } = {},
  ) {
    // A socket path, or a client already connected (a clone's agent answers before its record moves on).
    this.agent = typeof agent === "string" ? new AgentClient(agent) : agent;
    this.readiness = new Readiness(options.created ?? false);
  }

  get alive(): boolean {
    return this.machine.running;
  }

  /** Has the guest write its page cache to disk. Best effort, bounded: a slow or gone agent is skipped. */
  async syncDisks(timeoutMs = 3000): Promise<void> {
    if (!this.readiness.isReady) return;
    try {
      const signal = AbortSignal.timeout(timeoutMs);
      const { stream: frames } = await this.agent.exec({ cmd: "sync", args: [], env: [], stdin: false, stdio: "text" }, undefined, signal);
      frames.resume();
      await new Promise<void>((resolve) => {
        frames.once("close", resolve);
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
    } catch {
      // the engine's own flush when the machine ends still happens
    }
  }

  dispose(): void {
    this.agent.close();
    this.machine.dispose();
  }
}
