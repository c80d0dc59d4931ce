// HTTP/1.1 over a raw socket, for what clients would normalise or refuse to send: absolute-form targets,
// dot segments, malformed request lines and headers, bodies that lie about their length, bytes that
// trickle in. Sends what it is given and reads one answer (by Content-Length, chunked, or until close).
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

export interface RawEndpoint {
  /** TCP port on 127.0.0.1, or a unix socket path. */
  port?: number;
  host?: string;
  socketPath?: string;
}

export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The whole body came (by its length, or its last chunk); false when the connection ended first. */
  complete: boolean;
  /** The connection was closed by the server (after the answer, or instead of one). */
  closed: boolean;
  /** Nothing more came before the reader's own deadline (the server kept the connection). */
  timedOut: boolean;
  /** Milliseconds from the first byte sent to the answer (or to the close). */
  elapsedMs: number;
}

export function endpointOf(url: string): RawEndpoint {
  if (url.startsWith("/")) return { socketPath: url };
  const parsed = new URL(url);
  return { host: parsed.hostname, port: Number(parsed.port) };
}

export function openSocket(endpoint: RawEndpoint): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = endpoint.socketPath ? connect(endpoint.socketPath) : connect(endpoint.port ?? 80, endpoint.host ?? "127.0.0.1");
    socket.once("connect", () => {
      socket.off("error", reject);
      resolve(socket);
    });
    socket.once("error", reject);
  });
}

/** The answer, parsed once enough bytes arrived; undefined while it is incomplete. */
function parseAnswer(data: Buffer, closed: boolean, bodiless = false): Omit<RawAnswer, "elapsedMs" | "closed" | "timedOut"> | undefined {
  const end = data.indexOf("\r\n\r\n");
  if (end < 0) return undefined;
  const head = data.subarray(0, end).toString("latin1").split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? "")?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const line of head.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const rest = data.subarray(end + 4);
  const answer = (body: string, complete = true): Omit<RawAnswer, "elapsedMs" | "closed" | "timedOut"> => ({ status, headers, body, complete });
  if (bodiless || status === 101 || status === 204 || status === 304) return answer("");
  if (headers["content-length"] !== undefined) {
    const length = Number(headers["content-length"]);
    if (rest.length >= length) return answer(rest.subarray(0, length).toString("utf8"));
    return closed ? answer(rest.toString("utf8"), false) : undefined;
  }
  if (/chunked/i.test(headers["transfer-encoding"] ?? "")) {
    let body = "";
    let at = 0;
    for (;;) {
      const lineEnd = rest.indexOf("\r\n", at);
      const size = lineEnd < 0 ? Number.NaN : parseInt(rest.subarray(at, lineEnd).toString("latin1"), 16);
      if (size === 0) return answer(body);
      if (Number.isNaN(size) || rest.length < lineEnd + 2 + size + 2) return closed ? answer(body, false) : undefined;
      body += rest.subarray(lineEnd + 2, lineEnd + 2 + size).toString("utf8");
      at = lineEnd + 2 + size + 2;
    }
  }
  return closed ? answer(rest.toString("utf8")) : undefined;
}

/**
 * Reads one answer from `socket`; `timeoutMs` later, what came so far (status 0 if nothing). `bodiless`: the
 * answer to a HEAD request, which has headers only.
 */
export function readAnswer(socket: Socket, timeoutMs: number, startedAt = performance.now(), bodiless = false): Promise<RawAnswer> {
  return new Promise((resolve) => {
    let data = Buffer.alloc(0);
    let done = false;
    // `ended`: the server closed the connection, or the wait is over (timedOut): either way, no more comes.
    const finish = (ended: boolean, timedOut = false): void => {
      if (done) return;
      const parsed = parseAnswer(data, ended, bodiless) ?? { status: 0, headers: {}, body: data.toString("utf8"), complete: false };
      if (!ended && parsed.status === 0) return;
      done = true;
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      resolve({ ...parsed, closed: ended && !timedOut, timedOut, elapsedMs: performance.now() - startedAt });
    };
    const onData = (chunk: Buffer): void => {
      data = Buffer.concat([data, chunk]);
      if (parseAnswer(data, false, bodiless)) finish(socket.destroyed);
    };
    const onClose = (): void => void setImmediate(() => finish(true));
    const timer = setTimeout(() => finish(true, true), timeoutMs);
    socket.on("data", onData);
    socket.once("close", onClose);
    if (socket.listenerCount("error") === 0) socket.on("error", () => undefined);
  });
}

/** Sends `text` (or bytes) on a new connection and reads one answer; the connection is closed after. */
export async function rawRequest(endpoint: RawEndpoint, request: string | Buffer, timeoutMs = 10_000): Promise<RawAnswer> {
  const text = Buffer.from(request);
  const socket = await openSocket(endpoint);
  const started = performance.now();
  let closed = false;
  socket.once("close", () => (closed = true));
  const answer = readAnswer(socket, timeoutMs, started, text.subarray(0, 5).toString() === "HEAD ");
  socket.write(text);
  const result = await answer;
  // An answer that announces the close is followed by it: give it a moment, to report it.
  if (!closed && /close/i.test(result.headers.connection ?? "")) await Promise.race([new Promise((resolve) => socket.once("close", resolve)), sleep(5000)]);
  socket.destroy();
  return { ...result, closed: result.closed || closed };
}

export interface TrickleOptions {
  /** Sent at once before the trickle (the headers of a request whose body trickles). */
  head?: string;
  everyMs: number;
  /** Bytes per piece (default 1). */
  bytes?: number;
  /** How long to wait for an answer, in all. */
  timeoutMs: number;
  /** Keep sending after an answer came, while the connection is open (a body the server drains). */
  afterAnswer?: boolean;
}

/**
 * Sends `text` a piece at a time, `everyMs` apart, for as long as the server keeps the connection (or the
 * text runs out), and reads whatever answer comes. How a slow client, or a slowloris, looks to a server.
 * `sentAll` says whether the server let the whole text in.
 */
export async function trickle(endpoint: RawEndpoint, text: string, options: TrickleOptions): Promise<RawAnswer & { sentAll: boolean }> {
  const socket = await openSocket(endpoint);
  const started = performance.now();
  const answer = readAnswer(socket, options.timeoutMs, started);
  let answered = false;
  let closed = false;
  void answer.then(() => (answered = true));
  socket.once("close", () => (closed = true));
  if (options.head) socket.write(options.head);
  const step = options.bytes ?? 1;
  let at = 0;
  for (; at < text.length && !closed && (options.afterAnswer || !answered); at += step) {
    socket.write(text.slice(at, at + step));
    await sleep(options.everyMs);
  }
  const result = await answer;
  // The answer may come just before the close: give the close a moment, to report it.
  if (!closed) await Promise.race([new Promise((resolve) => socket.once("close", resolve)), sleep(Math.max(5000, options.everyMs * 4))]);
  const sentAll = at >= text.length;
  socket.destroy();
  return { ...result, closed: result.closed || closed, sentAll };
}

/** A GET with the headers of a WebSocket upgrade (and more), as a request line and headers. */
export function upgradeRequest(target: string, headers: Record<string, string> = {}): string {
  const all: Record<string, string> = {
    host: "localhost",
    connection: "Upgrade",
    upgrade: "websocket",
    "sec-websocket-version": "13",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    ...headers,
  };
  return `GET ${target} HTTP/1.1\r\n${Object.entries(all)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("")}\r\n`;
}

/** A request with `Connection: close`, and a body when one is given. */
export function plainRequest(method: string, target: string, headers: Record<string, string> = {}, body?: string): string {
  const all: Record<string, string> = { host: "localhost", connection: "close", ...headers };
  if (body !== undefined && all["content-length"] === undefined && all["transfer-encoding"] === undefined) all["content-length"] = String(Buffer.byteLength(body));
  return `${method} ${target} HTTP/1.1\r\n${Object.entries(all)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("")}\r\n${body ?? ""}`;
}
