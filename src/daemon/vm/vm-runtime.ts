// The live parts of one running VM incarnation: its QEMU process, QMP connection, agent client and NIC.
import type { QemuProcess, QmpClient } from "../../engine/index.ts";
import type { NetworkAttachment } from "../../net/attachment.ts";
import { AgentClient } from "../agent/agent-client.ts";
import { VmCondition } from "./vm-condition.ts";

export class VmRuntime {
  readonly agent: AgentClient;
  /** Settles when the agent answered and took the VM's identity (or bring-up failed). */
  ready: Promise<void> = Promise.resolve();
  isReady = false;
  /** A VM created by this launch (not relaunched, restored or re-attached), until its first bring-up. */
  fresh = false;
  /** Stopped by its disk? Does its agent answer? (see vm-condition.ts) */
  readonly condition = new VmCondition();
  /**
   * The NIC's link is down (a state resumed on a TAP still speaks with the saved machine's MAC and address):
   * the bring-up raises it once the guest took its own identity.
   */
  linkDown = false;

  constructor(
    readonly hostname: string,
    readonly incarnation: number,
    readonly process: QemuProcess,
    readonly qmp: QmpClient | undefined,
    agent: string | AgentClient,
    /**
     * The machine's NIC as it was made for this incarnation; undefined for a VM re-attached after a daemon
     * restart until the network side (recovery) has found it again.
     */
    public attachment?: NetworkAttachment,
  ) {
    // A socket path, or a client already connected (a clone's agent answers before its record moves on).
    this.agent = typeof agent === "string" ? new AgentClient(agent) : agent;
    // A closed QMP socket is the first sign that QEMU is gone.
    qmp?.on("close", () => process.maybeExited());
  }

  get alive(): boolean {
    return this.process.running;
  }

  /** Has the guest write its page cache to disk. Best effort, bounded: a slow or gone agent is skipped. */
  async syncDisks(timeoutMs = 3000): Promise<void> {
    if (!this.isReady) return;
    try {
      const signal = AbortSignal.timeout(timeoutMs);
      const frames = await this.agent.exec({ cmd: "sync", args: [], env: [], stdin: false, stdio: "text" }, undefined, signal);
      frames.resume();
      await new Promise<void>((resolve) => {
        frames.once("close", resolve);
        signal.addEventListener("abort", () => resolve(), { once: true });
      });
    } catch {
      // QEMU's own flush when it quits still happens
    }
  }

  dispose(): void {
    this.agent.close();
    this.qmp?.close();
  }
}
