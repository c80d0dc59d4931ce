// The daemon's connection to one VM's guest agent: a single HTTP/2 session over the VM's agent socket,
// opened after the handshake and reopened on demand when it breaks (VM reboot, daemon restart, guest reset).
import { constants as h2, connect as h2connect, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { AGENT_MAX_FRAME_SIZE, AGENT_PATHS, EXEC_SPEC_HEADER, headerJson, type AgentHealth, type ExecSpec, type GuestIdentity } from "../../protocol/agent.ts";
import { openCancellableRequest } from "./cancel-request.ts";
import { agentHandshake } from "./handshake.ts";

export class AgentError extends Error {
  /** The agent's HTTP status, when it answered with an error. */
  readonly status: number | undefined;
  /** The agent's error code, when it answered with one. */
  readonly code: string | undefined;

  constructor(message: string, options: { status?: number; code?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AgentError";
    this.status = options.status;
    this.code = options.code;
  }
}

export interface AgentCall {
  /** Extra request headers (feature parameters travel as JSON in a header when the body is a stream). */
  headers?: Record<string, string>;
  /** The request body: JSON-encoded when a plain value, piped when a stream. */
  body?: Readable | Buffer | string | Record<string, unknown> | unknown[];
  signal: AbortSignal;
}

export interface AgentResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** The response body, unread. */
  stream: ClientHttp2Stream;
  /**
   * Cuts the request: RST_STREAM(CANCEL) alone, whatever of the body was sent stays unended, so the guest
   * sees a cut (an error), never a complete input. The way to give up on a request; not stream.close().
   */
  cancel(): void;
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

  constructor(private socketPathNow: string) {}

  get socketPath(): string {
    return this.socketPathNow;
  }

  /** The VM's folder was renamed (a warm-pool clone given its name): later reconnects use the new path. */
  relocate(socketPath: string): void {
    this.socketPathNow = socketPath;
  }

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

  health(signal: AbortSignal): Promise<AgentHealth> {
    return this.callJson<AgentHealth>("GET", AGENT_PATHS.health, { signal });
  }

  /**
   * An HTTP/2 PING over the agent's session: answered by the agent's event loop itself (no stream, no route),
   * so it proves the agent runs for the least a guest can spend. Rejects when `signal` aborts first.
   */
  async ping(signal: AbortSignal): Promise<void> {
    const session = await this.connect(signal);
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(new AgentError("The guest agent did not answer a ping in time"));
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      const sent = session.ping((err) => {
        signal.removeEventListener("abort", onAbort);
        if (err) reject(new AgentError(`Ping to the agent failed: ${err.message}`, { cause: err }));
        else resolve();
      });
      if (!sent) {
        signal.removeEventListener("abort", onAbort);
        reject(new AgentError("Cannot ping the agent: too many pings in flight"));
      }
    });
  }

  applyIdentity(identity: GuestIdentity, signal: AbortSignal): Promise<AgentHealth> {
    return this.callJson<AgentHealth>("POST", AGENT_PATHS.identity, { body: { ...identity }, signal });
  }

  /**
   * Starts a command; resolves with the NDJSON frame stream once the agent accepted it. `stdin` (when the spec
   * asks for it) is piped into the request. Cancelling the answer kills the command in the guest.
   */
  exec(spec: ExecSpec, stdin: Readable | undefined, signal: AbortSignal): Promise<AgentResponse> {
    return this.call("POST", AGENT_PATHS.exec, {
      headers: { [EXEC_SPEC_HEADER]: headerJson(spec) },
      body: spec.stdin ? stdin : undefined,
      signal,
    });
  }

  /**
   * One request to the agent. Resolves once the agent answered with a 2xx status, with the body unread;
   * a 4xx/5xx answer becomes an AgentError carrying the agent's status, code and message.
   */
  async call(method: string, path: string, options: AgentCall): Promise<AgentResponse> {
    const session = await this.connect(options.signal);
    const body = options.body;
    const isStream = body !== undefined && typeof (body as Readable).pipe === "function";
    const payload = body === undefined || isStream ? undefined : typeof body === "string" || Buffer.isBuffer(body) ? body : JSON.stringify(body);
    const isJson = payload !== undefined && typeof body !== "string" && !Buffer.isBuffer(body);
    const { stream, cancel } = openCancellableRequest(
      session,
      { [h2.HTTP2_HEADER_METHOD]: method, [h2.HTTP2_HEADER_PATH]: path, ...(isJson ? { [h2.HTTP2_HEADER_CONTENT_TYPE]: "application/json" } : {}), ...options.headers },
      { endStream: body === undefined },
    );
    if (isStream) {
      const source = body as Readable;
      source.on("error", cancel);
      source.pipe(stream);
    } else if (payload !== undefined) {
      stream.end(payload);
    }
    const { status, headers } = await this.response(stream, options.signal, cancel);
    if (status >= 400) {
      // An answer before the whole body was sent refuses the rest of it: stop sending, and end the stream
      // once the answer is read (otherwise it stays open, holding the source paused forever).
      if (isStream) (body as Readable).unpipe(stream);
      const text = await readAll(stream).catch(() => "");
      if (isStream && !stream.closed) cancel();
      const parsed = parseError(text);
      throw new AgentError(parsed.error, { status, code: parsed.code });
    }
    this.lastCallAt = new Date();
    return { status, headers, stream, cancel };
  }

  /** A call whose answer is JSON. */
  async callJson<T>(method: string, path: string, options: AgentCall): Promise<T> {
    const { stream } = await this.call(method, path, options);
    const text = await readAll(stream);
    try {
      return JSON.parse(text) as T;
    } catch (cause) {
      throw new AgentError(`Agent sent malformed JSON for ${path}`, { cause });
    }
  }

  /** Drops the current session (the guest rebooted or was restored); the next call connects afresh. */
  reset(): void {
    this.session?.destroy();
    this.session = undefined;
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
      settings: { initialWindowSize: SESSION_WINDOW, maxFrameSize: AGENT_MAX_FRAME_SIZE },
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

  private response(stream: ClientHttp2Stream, signal: AbortSignal, cancel: () => void): Promise<{ status: number; headers: IncomingHttpHeaders }> {
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        cancel();
        reject(new AgentError("The guest agent did not answer in time"));
      };
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      stream.once("response", (headers) => {
        signal.removeEventListener("abort", onAbort);
        resolve({ status: Number(headers[h2.HTTP2_HEADER_STATUS]), headers });
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

function parseError(body: string): { error: string; code: string | undefined } {
  try {
    const parsed = JSON.parse(body) as { error?: string; code?: string };
    return { error: parsed.error ?? body, code: parsed.code };
  } catch {
    return { error: body.slice(0, 200) || "no details", code: undefined };
  }
}
