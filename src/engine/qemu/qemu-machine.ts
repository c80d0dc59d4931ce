// One QEMU process behind the Machine interface: its QMP connection says what the vCPUs do, and each
// lifecycle sequence the daemon needs (stop, save, resume on failure; ask to end, then kill) is written here
// once. QMP's event and status names are translated into the seam's words at this edge.
import { rm } from "node:fs/promises";
import type { ExitCause, ExitInfo, Machine, MachineCapabilities, MachineEvent, MachineEventType, MachineExit, MachineFiles, RunState, SaveStateOptions } from "../machine.ts";
import { loadVmState, saveVmState } from "./migration.ts";
import type { QemuProcess } from "./qemu-process.ts";
import { QmpError, type QmpBlockIoError, type QmpClient, type QmpEvent } from "./qmp-client.ts";

/** The id of every machine's one NIC (qemu-args.ts names its netdev so; set_link takes it). */
export const NIC_ID = "net0";

/** What QEMU can do for Corral's machines. */
export const QEMU_CAPABILITIES: MachineCapabilities = { memoryTemplates: true, saveState: true, linkControl: true, reattach: true };

/** How long a machine may take to end after `quit` when a sequence ends it (suspend, template). */
const DEFAULT_QUIT_GRACE_MS = 10_000;

/** The seam's event for a QMP event, or undefined for one the daemon does not listen to. */
export function machineEventOf(event: QmpEvent): MachineEvent | undefined {
  switch (event.event) {
    case "STOP":
      return { type: "stopped" };
    case "RESUME":
      return { type: "resumed" };
    case "RESET":
      return { type: "reset" };
    case "SHUTDOWN":
      return { type: "shutdown", byGuest: event.data?.guest === true };
    case "BLOCK_IO_ERROR": {
      const data = event.data as unknown as QmpBlockIoError | undefined;
      if (!data) return undefined;
      return { type: "disk-error", device: data.device, operation: data.operation, action: data.action, nospace: data.nospace === true, reason: data.reason };
    }
    default:
      return undefined;
  }
}

/** Why a process ended, from its status and what this daemon did to it. */
export function exitCauseOf(info: ExitInfo, did: { signalSent: NodeJS.Signals | undefined; asked: boolean }): ExitCause {
  if (info.signal !== null) return did.signalSent === undefined ? "crashed" : "killed";
  if (info.code !== null) return did.asked ? "requested" : "guest";
  if (did.signalSent !== undefined) return "killed";
  return did.asked ? "requested" : "vanished";
}

export class QemuMachine implements Machine {
  readonly engine = "qemu";
  readonly capabilities = QEMU_CAPABILITIES;
  readonly exited: Promise<MachineExit>;
  private asked = false;
  private linkState: "up" | "down" | "unknown";
  private stateSocket: string;

  constructor(
    private readonly process: QemuProcess,
    private readonly qmp: QmpClient,
    files: Pick<MachineFiles, "stateSocket">,
    link: "up" | "unknown",
  ) {
    this.linkState = link;
    this.stateSocket = files.stateSocket;
    this.exited = process.exited.then((info) => ({ ...info, cause: exitCauseOf(info, { signalSent: process.signalSent, asked: this.asked }) }));
    // A closed QMP socket is the first sign that QEMU is gone.
    qmp.on("close", () => process.maybeExited());
  }

  get pid(): number {
    return this.process.pid;
  }

  get startTime(): string {
    return this.process.startTime;
  }

  get running(): boolean {
    return this.process.running;
  }

  get link(): "up" | "down" | "unknown" {
    return this.linkState;
  }

  onEvent(listener: (event: MachineEvent) => void): () => void {
    const onQmp = (event: QmpEvent): void => {
      const translated = machineEventOf(event);
      if (translated) listener(translated);
    };
    this.qmp.on("event", onQmp);
    return () => this.qmp.off("event", onQmp);
  }

  nextEvent(type: MachineEventType, timeoutMs: number): Promise<MachineEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(new QmpError(`The machine's ${type} event did not come in ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.onEvent((event) => {
        if (event.type !== type) return;
        cleanup();
        resolve(event);
      });
      const onClose = (): void => {
        cleanup();
        reject(new QmpError(`QMP connection closed while waiting for the machine's ${type} event`));
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        off();
        this.qmp.off("close", onClose);
      };
      this.qmp.on("close", onClose);
    });
  }

  pause(): Promise<void> {
    return this.qmp.stop();
  }

  resume(): Promise<void> {
    return this.qmp.cont();
  }

  /**
   * QEMU runs with -no-reboot (a guest whose agent died must end, not reboot), which turns a reset into an
   * exit: one reset is allowed, then the action goes back.
   */
  async reset(): Promise<void> {
    await this.qmp.setAction({ reboot: "reset" });
    const reset = this.nextEvent("reset", 10_000);
    try {
      await this.qmp.systemReset();
      await reset;
    } finally {
      reset.catch(() => undefined);
      await this.qmp.setAction({ reboot: "shutdown" });
    }
  }

  /** `io-error` is a stop on a disk error; a drive whose `io-status` is `nospace` says it was a full disk. */
  async runState(): Promise<RunState> {
    const status = await this.qmp.queryStatus();
    if (status.status !== "io-error") return { running: status.running, detail: status.status };
    const blocks = await this.qmp.queryBlock();
    return { running: status.running, detail: status.status, diskError: { nospace: blocks.some((b) => b["io-status"] === "nospace") } };
  }

  async setLink(up: boolean): Promise<void> {
    await this.qmp.setLink(NIC_ID, up);
    this.linkState = up ? "up" : "down";
  }

  /** The one "stop, work, resume (also on failure)" of the daemon: suspend, commit and template saves use it. */
  async withVcpusStopped<T>(work: () => Promise<T>, options: { resume: "always" | "on-failure" } = { resume: "always" }): Promise<T> {
    const wasRunning = (await this.qmp.queryStatus()).running;
    if (wasRunning) await this.qmp.stop();
    let result: T;
    try {
      result = await work();
    } catch (err) {
      if (wasRunning && this.running) await this.qmp.cont().catch(() => undefined);
      throw err;
    }
    if (wasRunning && options.resume === "always") await this.qmp.cont();
    return result;
  }

  /**
   * Stop, save, and then quit, resume or stay; on a failed save the partial file goes and the vCPUs run again
   * if they ran before. The vCPUs are stopped first so the state is consistent with the disk beside it.
   */
  async saveState(file: string, options: SaveStateOptions): Promise<void> {
    const save = async (): Promise<void> => {
      try {
        await saveVmState(this.qmp, file, this.stateSocket, options.deadlineMs);
      } catch (err) {
        await rm(file, { force: true });
        throw err;
      }
    };
    await this.withVcpusStopped(save, { resume: options.after === "resume" ? "always" : "on-failure" });
    if (options.after === "quit") await this.shutdown({ graceMs: options.graceMs ?? DEFAULT_QUIT_GRACE_MS });
  }

  async loadState(file: string, options: { deadlineMs?: number } = {}): Promise<void> {
    await loadVmState(this.qmp, file, this.stateSocket, options.deadlineMs);
    await this.qmp.cont();
  }

  /**
   * `x-ignore-shared`: every state a template-backed machine saves and loads has the same format, its RAM
   * left in the template's file. A clone's private mapping is not "shared": its suspends still save every page.
   */
  useMemoryTemplate(): Promise<void> {
    return this.qmp.migrateSetCapabilities([{ capability: "x-ignore-shared", state: true }]);
  }

  /** `quit` (QEMU flushes its disk caches and exits), then SIGKILL once the grace is over. */
  async shutdown(options: { graceMs: number }): Promise<MachineExit> {
    if (this.process.running) {
      this.asked = true;
      void this.qmp.quit().catch(() => undefined);
      const timer = setTimeout(() => this.process.kill("SIGKILL"), options.graceMs);
      try {
        return await this.exited;
      } finally {
        clearTimeout(timer);
      }
    }
    this.process.kill("SIGKILL");
    return this.exited;
  }

  kill(): Promise<MachineExit> {
    this.process.kill("SIGKILL");
    return this.exited;
  }

  moveFiles(files: Pick<MachineFiles, "transcript" | "stateSocket">): void {
    this.qmp.moveTranscript(files.transcript);
    this.stateSocket = files.stateSocket;
  }

  dispose(): void {
    this.qmp.close();
  }
}
