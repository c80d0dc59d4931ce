// A QMP client of our own: one typed method per command we use, a timeout on every command, and a
// transcript of everything said (appended to the VM's qmp.log) for post-mortems.
import { appendFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { EventEmitter } from "node:events";

export class QmpError extends Error {
  readonly qmpClass: string | undefined;

  constructor(message: string, options: { qmpClass?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "QmpError";
    this.qmpClass = options.qmpClass;
  }
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** `query-migrate`: status is "setup", "active", "completed", "failed", "cancelled", ... */
export interface QmpMigrationInfo {
  status?: string;
  "error-desc"?: string;
  ram?: { transferred?: number; total?: number };
}

/** `query-status`: "running", "paused", "inmigrate", "postmigrate", "shutdown", ... */
export interface QmpStatus {
  running: boolean;
  status: string;
}

/** `query-block`: one entry per drive; `io-status` only for drives whose error policy can stop the VM. */
export interface QmpBlockInfo {
  device: string;
  "io-status"?: "ok" | "failed" | "nospace";
}

/**
 * `BLOCK_IO_ERROR`: a disk request failed; with `action: "stop"` QEMU stopped the vCPUs (its default policy,
 * werror=enospc, does that when the host has no space left: `nospace`). The request is retried on `cont`.
 */
export interface QmpBlockIoError {
  device: string;
  operation: "read" | "write";
  action: "ignore" | "report" | "stop";
  nospace?: boolean;
  reason: string;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  command: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;

export interface QmpConnectOptions {
  /** Appends the conversation here, one line per message. */
  transcript?: string;
  /** Per-command deadline (and the deadline for the greeting). */
  timeoutMs?: number;
  /** Gives up connecting (socket, greeting, negotiation) when aborted. */
  signal?: AbortSignal;
}

export class QmpClient extends EventEmitter<{ event: [QmpEvent]; close: [] }> {
  private buffer = "";
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private closed = false;
  private transcriptChain: Promise<void> = Promise.resolve();

  private constructor(
    private readonly socket: Socket,
    private options: QmpConnectOptions,
  ) {
    super();
  }

  /** Connects, reads the greeting and leaves capabilities negotiation mode. */
  static async connect(socketPath: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const { signal } = options;
    if (signal?.aborted) throw new QmpError(`Connecting to QMP at ${socketPath} was aborted`);
    const socket = connect(socketPath);
    const client = new QmpClient(socket, options);
    const onAbort = (): void => {
      socket.destroy();
      client.onClose();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error): void => reject(new QmpError(`Cannot connect to QMP at ${socketPath}: ${err.message}`, { cause: err }));
        socket.once("error", onError);
        socket.once("close", () => reject(new QmpError(`Connecting to QMP at ${socketPath} was aborted`)));
        socket.once("connect", () => {
          socket.off("error", onError);
          resolve();
        });
      });
      client.attach();
      await client.greeting(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
      await client.execute("qmp_capabilities");
    } catch (err) {
      socket.destroy();
      throw signal?.aborted ? new QmpError(`Connecting to QMP at ${socketPath} was aborted`, { cause: err }) : err;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
    return client;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  queryStatus(): Promise<QmpStatus> {
    return this.execute("query-status") as Promise<QmpStatus>;
  }

  queryBlock(): Promise<QmpBlockInfo[]> {
    return this.execute("query-block") as Promise<QmpBlockInfo[]>;
  }

  stop(): Promise<void> {
    return this.execute("stop").then(() => undefined);
  }

  cont(): Promise<void> {
    return this.execute("cont").then(() => undefined);
  }

  /** Sets a NIC's carrier (`set_link`): a restored clone's link stays down until the guest took its own MAC and address. */
  setLink(name: string, up: boolean): Promise<void> {
    return this.execute("set_link", { name, up }).then(() => undefined);
  }

  /** Asks the guest to power off (ACPI power button). */
  systemPowerdown(): Promise<void> {
    return this.execute("system_powerdown").then(() => undefined);
  }

  systemReset(): Promise<void> {
    return this.execute("system_reset").then(() => undefined);
  }

  /** Changes what QEMU does on reboot, shutdown or panic at run time (`-no-reboot` is reboot=shutdown). */
  setAction(actions: { reboot?: "reset" | "shutdown"; shutdown?: "poweroff" | "pause"; panic?: "pause" | "shutdown" | "none" }): Promise<void> {
    return this.execute("set-action", actions).then(() => undefined);
  }

  /** Resolves with the next event of that name; rejects after `timeoutMs` or when the connection closes. */
  waitForEvent(name: string, timeoutMs: number): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(new QmpError(`QMP event ${name} did not come in ${timeoutMs} ms`));
      }, timeoutMs);
      const onEvent = (event: QmpEvent): void => {
        if (event.event !== name) return;
        cleanup();
        resolve(event);
      };
      const onClose = (): void => {
        cleanup();
        reject(new QmpError(`QMP connection closed while waiting for ${name}`));
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        this.off("event", onEvent);
        this.off("close", onClose);
      };
      this.on("event", onEvent);
      this.on("close", onClose);
    });
  }

  /** Sends the VM's state (RAM and devices) to a migration URI, e.g. `unix:/path`. Completes asynchronously. */
  migrate(uri: string): Promise<void> {
    return this.execute("migrate", { uri }).then(() => undefined);
  }

  /** On a QEMU started with `-incoming defer`: receives the state from a migration URI. */
  migrateIncoming(uri: string): Promise<void> {
    return this.execute("migrate-incoming", { uri }).then(() => undefined);
  }

  queryMigrate(): Promise<QmpMigrationInfo> {
    return this.execute("query-migrate") as Promise<QmpMigrationInfo>;
  }

  migrateSetParameters(parameters: Record<string, unknown>): Promise<void> {
    return this.execute("migrate-set-parameters", parameters).then(() => undefined);
  }

  migrateSetCapabilities(capabilities: { capability: string; state: boolean }[]): Promise<void> {
    return this.execute("migrate-set-capabilities", { capabilities }).then(() => undefined);
  }

  /** Ends QEMU at once. The reply may be lost in the exit; a closed socket counts as success. */
  async quit(): Promise<void> {
    try {
      await this.execute("quit");
    } catch (err) {
      if (!this.closed) throw err;
    }
  }

  /** Sends one command; rejects with QmpError on an error reply, a closed socket or the deadline. */
  execute(command: string, args?: Record<string, unknown>, timeoutMs = this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS): Promise<unknown> {
    if (this.closed) return Promise.reject(new QmpError(`Cannot run QMP command "${command}": the connection is closed`));
    const id = `c${this.nextId++}`;
    const message = JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpError(`QMP command "${command}" got no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, command });
      this.record(">", message);
      this.socket.write(`${message}\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private attach(): void {
    this.socket.setEncoding("utf8");
    this.socket.on("data", (chunk: string) => this.onData(chunk));
    this.socket.on("error", () => undefined); // "close" follows and reports it
    this.socket.on("close", () => this.onClose());
  }

  private greeting(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new QmpError(`QMP greeting did not arrive in ${timeoutMs} ms`)), timeoutMs);
      this.pending.set("greeting", {
        resolve: () => resolve(),
        reject,
        timer,
        command: "greeting",
      });
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    for (let end = this.buffer.indexOf("\n"); end >= 0; end = this.buffer.indexOf("\n")) {
      const line = this.buffer.slice(0, end).trim();
      this.buffer = this.buffer.slice(end + 1);
      if (line.length > 0) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    this.record("<", line);
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    if ("QMP" in message) return this.settle("greeting", undefined);
    if (typeof message.event === "string") {
      this.emit("event", message as unknown as QmpEvent);
      return;
    }
    const id = typeof message.id === "string" ? message.id : undefined;
    if (!id) return;
    if ("error" in message) {
      const error = message.error as { class?: string; desc?: string };
      const pending = this.pending.get(id);
      return this.settle(id, new QmpError(`QMP command "${pending?.command ?? "?"}" failed: ${error.desc ?? "unknown error"}`, { qmpClass: error.class }), true);
    }
    this.settle(id, message.return);
  }

  private settle(id: string, value: unknown, isError = false): void {
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if (isError) pending.reject(value as Error);
    else pending.resolve(value);
  }

  /** Rejects whatever is pending; also used when connecting is aborted. */
  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(new QmpError(`QMP connection closed before "${pending.command}" was answered`));
      this.pending.delete(id);
    }
    this.record("-", "connection closed");
    this.emit("close");
  }

  /** Appends the transcript to another file from now on (the VM's folder was renamed). */
  moveTranscript(file: string): void {
    this.options = { ...this.options, transcript: file };
  }

  private record(direction: string, text: string): void {
    const file = this.options.transcript;
    if (!file) return;
    const line = `${new Date().toISOString()} ${direction} ${text}\n`;
    this.transcriptChain = this.transcriptChain.then(() => appendFile(file, line)).catch(() => undefined);
  }
}
