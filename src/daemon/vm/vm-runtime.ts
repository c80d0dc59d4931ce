// The live parts of one running VM incarnation: its QEMU process, QMP connection and agent client.
import type { QemuProcess, QmpClient } from "../../engine/index.ts";
import { AgentClient } from "../agent/agent-client.ts";

export class VmRuntime {
  readonly agent: AgentClient;
  /** Settles when the agent answered and took the VM's identity (or bring-up failed). */
  ready: Promise<void> = Promise.resolve();
  isReady = false;

  constructor(
    readonly hostname: string,
    readonly incarnation: number,
    readonly process: QemuProcess,
    readonly qmp: QmpClient | undefined,
    agentSocket: string,
  ) {
    this.agent = new AgentClient(agentSocket);
    // A closed QMP socket is the first sign that QEMU is gone.
    qmp?.on("close", () => process.maybeExited());
  }

  get alive(): boolean {
    return this.process.running;
  }

  dispose(): void {
    this.agent.close();
    this.qmp?.close();
  }
}
