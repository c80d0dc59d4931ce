// The SDK's HTTP transport: base URL or unix socket, bearer token, errors as CorralApiError. Every
// namespace of the client (nodes, exec, files, secrets, ...) sends through one of these.
//
// It speaks HTTP/1.1 through node:http rather than undici: loading undici (its whole index, plus Node's
// own copy that its cookie module wakes, each compiling llhttp's WebAssembly) cost a `corral vm list` about
// 130 ms of its 250 ms (docs/benchmarks.md, "CLI start"). Responses keep the shape undici's callers know:
// `statusCode`, `headers`, and a `body` stream with `text()`, `json()` and `dump()`.
import { Agent as HttpAgent, type IncomingHttpHeaders, type IncomingMessage, type RequestOptions, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { Socket } from "node:net";
import { type Readable, finished } from "node:stream";

export interface ClientOptions {
  /** `http://host:port`, or a unix socket as `unix:/path`, `unix:///path` or a path ending in `.sock`. */
  url: string;
  token?: string;
  /** Per-request deadline for everything but streams and waits (default 30 s). */
  timeoutMs?: number;
}

export type HttpMethod = "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS";

export class CorralApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly method: string,
    readonly path: string,
  ) {
    super(message);
    this.name = "CorralApiError";
  }
}

/** The error an answer of `status` with body `text` stands for: Corral's `{error, code}` when it is JSON. */
export function apiErrorFrom(status: number, text: string, method: string, path: string): CorralApiError {
  let code = "unknown";
  let message = text || `HTTP ${status}`;
  try {
    const parsed = JSON.parse(text) as { error?: string; code?: string };
    message = parsed.error ?? message;
    code = parsed.code ?? code;
  } catch {
    // not JSON: keep the text
  }
  return new CorralApiError(status, code, message, method, path);
}

export type QueryValue = string | number | boolean | readonly string[] | undefined;

export function queryString(params: Record<string, QueryValue>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) for (const item of value) search.append(key, String(item));
    else search.append(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export interface SendOptions {
  body?: string | Buffer | Readable;
  contentType?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** 0 for no deadline (streams). */
  timeoutMs?: number;
}

/** A response body: the stream itself, with undici's readers for whole bodies. */
export interface ResponseBody extends IncomingMessage {
  /** The whole body as UTF-8. */
  text(): Promise<string>;
  /** The whole body parsed as JSON. */
  json(): Promise<unknown>;
  /** Reads the body to its end and drops it (the connection can then carry the next request). */
  dump(): Promise<void>;
}

export interface HttpResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: ResponseBody;
}

/** Where requests go: a TCP origin or a unix socket, and the agent that keeps their connections. */
export interface Target {
  origin: string;
  socketPath?: string;
  secure: boolean;
  agent: HttpAgent;
}

// undici's default: a host that does not accept the connection within 10 s is unreachable.
const CONNECT_TIMEOUT_MS = 10_000;

/** The unix socket a daemon URL names (`unix:/p`, `unix:///p`, a path starting with "/" or ending in ".sock"). */
export function socketPathOf(url: string): string | undefined {
  if (url.startsWith("unix://")) return url.slice("unix://".length);
  if (url.startsWith("unix:")) return url.slice("unix:".length);
  if (url.startsWith("/") || url.endsWith(".sock")) return url;
  return undefined;
}

export function parseTarget(url: string): Target {
  const socketPath = socketPathOf(url);
  // Idle connections are kept for the next request; node:http unrefs them, so a CLI exits without closing,
  // and it closes one early when the server's Keep-Alive hint says the server will.
  if (socketPath !== undefined) return { origin: "http://localhost", socketPath, secure: false, agent: new HttpAgent({ keepAlive: true }) };
  const parsed = new URL(url);
  const secure = parsed.protocol === "https:";
  return { origin: parsed.origin, secure, agent: secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true }) };
}

/** Adds undici's whole-body readers to a response stream. */
function withReaders(message: IncomingMessage): ResponseBody {
  const text = async (): Promise<string> => {
    const chunks: Buffer[] = [];
    for await (const chunk of message) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  };
  const dump = (): Promise<void> =>
    new Promise((resolve) => {
      finished(message, () => resolve());
      message.resume();
    });
  return Object.assign(message, { text, json: async () => JSON.parse(await text()) as unknown, dump });
}

function codedError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

export class Transport {
  readonly target: Target;
  private closed = false;

  constructor(readonly options: ClientOptions) {
    this.target = parseTarget(options.url);
  }

  /** The base URL (a unix socket's requests go to http://localhost). */
  get origin(): string {
    return this.target.origin;
  }

  /** Like undici's close(): requests under way finish; idle connections end now, busy ones once they are done. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const { agent } = this.target;
    agent.on("free", (socket: Socket) => socket.destroy());
    for (const sockets of Object.values(agent.freeSockets)) for (const socket of sockets ?? []) socket.destroy();
  }

  async json<T>(method: HttpMethod, path: string, body?: unknown, timeoutMs?: number, signal?: AbortSignal): Promise<T> {
    const response = await this.send(method, path, {
      body: body === undefined ? undefined : JSON.stringify(body),
      contentType: body === undefined ? undefined : "application/json",
      timeoutMs,
      signal,
    });
    const text = await response.body.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** Sends the request; resolves at the answer's headers (the body still to read), rejects on 4xx and 5xx. */
  async send(method: HttpMethod, path: string, options: SendOptions): Promise<HttpResponse> {
    const response = await this.request(method, path, options);
    if (response.statusCode >= 400) throw apiErrorFrom(response.statusCode, await response.body.text(), method, path);
    return response;
  }

  /** Sends the request; resolves at the answer's headers whatever its status (for callers that read errors). */
  async request(method: HttpMethod, path: string, options: SendOptions): Promise<HttpResponse> {
    if (this.closed) throw codedError("UND_ERR_DESTROYED", `${method} ${path}: the client was closed`);
    const headers: Record<string, string> = { "user-agent": "corral-sdk" };
    if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
    if (options.contentType) headers["content-type"] = options.contentType;
    if (typeof options.body === "string" || Buffer.isBuffer(options.body)) headers["content-length"] = String(Buffer.byteLength(options.body));
    Object.assign(headers, options.headers);
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs ?? 30_000;
    let message: IncomingMessage;
    try {
      message = await this.exchange(method, path, headers, options, timeoutMs);
    } catch (err) {
      // A kept connection the server had already closed fails before anything was read: send once more on a
      // new one (what node:http's documentation advises), when sending twice does no harm: an idempotent
      // method, and not a streamed body (it cannot be read twice).
      if (!isStaleConnection(err) || !IDEMPOTENT.has(method) || isStream(options.body)) throw err;
      message = await this.exchange(method, path, headers, options, timeoutMs);
    }
    return { statusCode: message.statusCode ?? 0, headers: message.headers, body: withReaders(message) };
  }

  private exchange(method: HttpMethod, path: string, headers: Record<string, string>, options: SendOptions, timeoutMs: number): Promise<IncomingMessage> {
    const { socketPath, secure, agent, origin } = this.target;
    const url = socketPath === undefined ? new URL(origin) : undefined;
    const requestOptions: RequestOptions = {
      method,
      path,
      headers,
      agent,
      signal: options.signal,
      ...(socketPath !== undefined ? { socketPath } : { hostname: url?.hostname.replace(/^\[|\]$/g, ""), port: url?.port || undefined }),
    };
    return new Promise((resolve, reject) => {
      const request = (secure ? httpsRequest : httpRequest)(requestOptions);
      let answer: IncomingMessage | undefined;
      request.on("error", (err) => {
        if (answer === undefined) return reject(Object.assign(err, { reusedSocket: request.reusedSocket }));
        // After the answer began, a failure of the request side (a body stream that broke, a server that
        // stopped reading) ends the answer's stream with it; the reader sees it there.
      });
      request.on("socket", (socket: Socket) => {
        if (!socket.connecting) return;
        const timer = setTimeout(
          () => request.destroy(codedError("UND_ERR_CONNECT_TIMEOUT", `Connecting to ${origin} took more than ${CONNECT_TIMEOUT_MS / 1000} s`)),
          CONNECT_TIMEOUT_MS,
        );
        socket.once(secure ? "secureConnect" : "connect", () => clearTimeout(timer));
        socket.once("close", () => clearTimeout(timer));
      });
      // Like undici's headersTimeout and bodyTimeout: the deadline is for silence, whether waiting for the
      // answer or between two pieces of its body. The error goes to whoever is reading: the caller of send()
      // first, the reader of the body afterwards.
      if (timeoutMs > 0) {
        request.setTimeout(timeoutMs, () => {
          const silence = codedError(answer ? "UND_ERR_BODY_TIMEOUT" : "UND_ERR_HEADERS_TIMEOUT", `${method} ${path}: nothing within ${timeoutMs} ms`);
          answer?.destroy(silence);
          request.destroy(silence);
        });
      }
      request.on("response", (message) => {
        answer = message;
        resolve(message);
      });
      const body = options.body;
      if (isStream(body)) {
        body.on("error", (err) => request.destroy(err));
        body.pipe(request);
      } else request.end(body);
    });
  }
}

const IDEMPOTENT: ReadonlySet<HttpMethod> = new Set(["GET", "HEAD", "PUT", "DELETE", "OPTIONS"]);

function isStream(body: SendOptions["body"]): body is Readable {
  return body !== undefined && typeof body !== "string" && !Buffer.isBuffer(body);
}

function isStaleConnection(err: unknown): boolean {
  const { code, reusedSocket } = err as { code?: string; reusedSocket?: boolean };
  return reusedSocket === true && (code === "ECONNRESET" || code === "EPIPE");
}
