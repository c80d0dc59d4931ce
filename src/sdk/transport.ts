// The SDK's HTTP transport: base URL or unix socket, bearer token, errors as CorralApiError. Every
// namespace of the client (nodes, exec, files, secrets, ...) sends through one of these.
import type { Readable } from "node:stream";
import { Agent, request, type Dispatcher } from "undici";

export interface ClientOptions {
  /** `http://host:port`, or a unix socket as `unix:/path`, `unix:///path` or a path ending in `.sock`. */
  url: string;
  token?: string;
  /** Per-request deadline for everything but streams and waits (default 30 s). */
  timeoutMs?: number;
}

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

export interface Target {
  origin: string;
  dispatcher: Dispatcher;
}

/** The unix socket a daemon URL names (`unix:/p`, `unix:///p`, a path starting with "/" or ending in ".sock"). */
export function socketPathOf(url: string): string | undefined {
  if (url.startsWith("unix://")) return url.slice("unix://".length);
  if (url.startsWith("unix:")) return url.slice("unix:".length);
  if (url.startsWith("/") || url.endsWith(".sock")) return url;
  return undefined;
}

export function parseTarget(url: string): Target {
  const socketPath = socketPathOf(url);
  if (socketPath !== undefined) return { origin: "http://localhost", dispatcher: new Agent({ connect: { socketPath } }) };
  const parsed = new URL(url);
  return { origin: parsed.origin, dispatcher: new Agent({ keepAliveTimeout: 10_000 }) };
}

export class Transport {
  readonly target: Target;

  constructor(readonly options: ClientOptions) {
    this.target = parseTarget(options.url);
  }

  /** The base URL and the dispatcher to reach it (for WebSocket-style callers that build their own requests). */
  get origin(): string {
    return this.target.origin;
  }

  close(): Promise<void> {
    return this.target.dispatcher.close();
  }

  async json<T>(method: Dispatcher.HttpMethod, path: string, body?: unknown, timeoutMs?: number, signal?: AbortSignal): Promise<T> {
    const response = await this.send(method, path, {
      body: body === undefined ? undefined : JSON.stringify(body),
      contentType: body === undefined ? undefined : "application/json",
      timeoutMs,
      signal,
    });
    const text = await response.body.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  async send(method: Dispatcher.HttpMethod, path: string, options: SendOptions): Promise<Dispatcher.ResponseData> {
    const headers: Record<string, string> = { "user-agent": "corral-sdk" };
    if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
    if (options.contentType) headers["content-type"] = options.contentType;
    Object.assign(headers, options.headers);
    const timeout = options.timeoutMs ?? this.options.timeoutMs ?? 30_000;
    const response = await request(`${this.target.origin}${path}`, {
      method,
      headers,
      body: options.body,
      dispatcher: this.target.dispatcher,
      signal: options.signal,
      headersTimeout: timeout,
      bodyTimeout: timeout,
    });
    if (response.statusCode >= 400) {
      const text = await response.body.text();
      let code = "unknown";
      let message = text || `HTTP ${response.statusCode}`;
      try {
        const parsed = JSON.parse(text) as { error?: string; code?: string };
        message = parsed.error ?? message;
        code = parsed.code ?? code;
      } catch {
        // not JSON: keep the text
      }
      throw new CorralApiError(response.statusCode, code, message, method, path);
    }
    return response;
  }
}
