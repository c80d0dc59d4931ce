// The daemon's connection to one VM's guest agent: a single HTTP/2 session over the VM's agent socket,
// opened after the handshake and reopened on demand when it breaks (VM reboot, daemon restart, guest reset).
import { constants as h2, connect as h2connect, type ClientHttp2Session, type ClientHttp2Stream } from "node:http2";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { AGENT_PATHS, EXEC_SPEC_HEADER, type AgentHealth, type ExecSpec, type GuestIdentity } from "../../protocol/agent.ts";
import { agentHandshake } from "./handshake.ts";

export class AgentError extends Error {
  readonly status: number | undefined;

  constructor(message: string, options: { status?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AgentError";
    this.status = options.status;
  }
}

const SESSION_WINDOW = 16 * 1024 * 1024;

export class AgentClient {
  private session: ClientHttp2Session | undefined;
  private connecting: Promise<ClientHttp2Session> | undefined;
  private closed = false;
  /** Agent version reported by the last handshake. */
  agentVersion: string | undefined;
  /** Set whenever an agent call completes; shown as `last_agent_call`. */
  lastCallAt: Date | undefined;

  constructor(readonly socketPath: string) {}

  get connected(): boolean {
    return this.session !== undefined && !this.session.closed && !this.session.destroyed;
  }

  /** Returns the live session, or performs the handshake and opens one. */
  connect(signal: AbortSignal): Promise<ClientHttp2Session> {
    if (this.closed) return Promise.reject(new AgentError("Agent client is closed"));
    if (this.connected) return Promise.resolve(this.session as ClientHttp2Session);
    this.connecting ??= this.openSession(signal).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /**
   * Keeps trying to connect until the agent answers or `signal` aborts: used while a VM boots, when the
   * socket may not exist yet and the guest has not opened its end of the port.
   */
  async waitForConnection(signal: AbortSignal, isAlive: () => boolean): Promise<void> {
    for (;;) {
      try {
        await this.connect(signal);
        return;
      } catch (err) {
        if (signal.aborted) throw new AgentError("The guest agent did not answer in time", { cause: err });
        if (!isAlive()) throw new AgentError("The VM stopped before its agent answered", { cause: err });
        await sleep(50, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  async health(signal: AbortSignal): Promise<AgentHealth> {
    return (await this.requestJson("GET", AGENT_PATHS.health, undefined, signal)) as AgentHealth;
  }

  async applyIdentity(identity: GuestIdentity, signal: AbortSignal): Promise<AgentHealth> {
    return (await this.requestJson("POST", AGENT_PATHS.identity, identity, signal)) as AgentHealth;
  }

  /**
   * Starts a command; resolves with the NDJSON frame stream once the agent accepted it. `stdin` (when the spec
   * asks for it) is piped into the request. Destroying the returned stream kills the command in the guest.
   */
  async exec(spec: ExecSpec, stdin: Readable | undefined, signal: AbortSignal): Promise<ClientHttp2Stream> {
    const session = await this.connect(signal);
    const stream = session.request(
      { [h2.HTTP2_HEADER_METHOD]: "POST", [h2.HTTP2_HEADER_PATH]: AGENT_PATHS.exec, [EXEC_SPEC_HEADER]: JSON.stringify(spec) },
      { endStream: !(spec.stdin && stdin) },
    );
    if (spec.stdin && stdin) {
      stdin.on("error", () => stream.close(h2.NGHTTP2_CANCEL));
      stdin.pipe(stream);
    }
    const status = await this.responseStatus(stream, signal);
    if (status !== 200) {
      const body = await readAll(stream).catch(() => "");
      throw new AgentError(`Agent refused the command: ${errorText(body)}`, { status });
    }
    this.lastCallAt = new Date();
    return stream;
  }

  close(): void {
    this.closed = true;
    this.session?.destroy();
    this.session = undefined;
  }

  private async openSession(signal: AbortSignal): Promise<ClientHttp2Session> {
    const { socket, agentVersion } = await agentHandshake(this.socketPath, signal);
    const session = h2connect("http://corral-agent", {
      createConnection: () => socket,
      settings: { initialWindowSize: SESSION_WINDOW },
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new AgentError(`HTTP/2 session with the agent failed: ${err.message}`, { cause: err }));
      session.once("error", onError);
      session.once("connect", () => {
        session.off("error", onError);
        resolve();
      });
    });
    session.setLocalWindowSize(SESSION_WINDOW);
    session.on("error", () => undefined); // "close" follows
    session.on("close", () => {
      if (this.session === session) this.session = undefined;
    });
    session.on("goaway", () => {
      if (this.session === session) this.session = undefined;
    });
    session.unref(); // an open agent session must not keep the daemon alive
    this.session = session;
    this.agentVersion = agentVersion;
    return session;
  }

  private responseStatus(stream: ClientHttp2Stream, signal: AbortSignal): Promise<number> {
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        stream.close(h2.NGHTTP2_CANCEL);
        reject(new AgentError("The guest agent did not answer in time"));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      stream.once("response", (headers) => {
        signal.removeEventListener("abort", onAbort);
        resolve(Number(headers[h2.HTTP2_HEADER_STATUS]));
      });
      stream.once("error", (err) => {
        signal.removeEventListener("abort", onAbort);
        reject(new AgentError(`Agent request failed: ${err.message}`, { cause: err }));
      });
      stream.once("close", () => {
        signal.removeEventListener("abort", onAbort);
        reject(new AgentError("Agent closed the request before answering"));
      });
    });
  }

  private async requestJson(method: string, path: string, body: unknown, signal: AbortSignal): Promise<unknown> {
    const session = await this.connect(signal);
    const stream = session.request(
      { [h2.HTTP2_HEADER_METHOD]: method, [h2.HTTP2_HEADER_PATH]: path, [h2.HTTP2_HEADER_CONTENT_TYPE]: "application/json" },
      { endStream: body === undefined },
    );
    if (body !== undefined) stream.end(JSON.stringify(body));
    const status = await this.responseStatus(stream, signal);
    const text = await readAll(stream);
    if (status !== 200) throw new AgentError(`Agent answered ${status}: ${errorText(text)}`, { status });
    this.lastCallAt = new Date();
    try {
      return JSON.parse(text);
    } catch (cause) {
      throw new AgentError(`Agent sent malformed JSON for ${path}`, { cause });
    }
  }
}

function readAll(stream: ClientHttp2Stream): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      text += chunk;
    });
    stream.on("end", () => resolve(text));
    stream.on("error", reject);
  });
}

function errorText(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: string };
    return parsed.error ?? body;
  } catch {
    return body.slice(0, 200) || "no details";
  }
}
