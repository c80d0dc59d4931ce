// How long a client may take to send its request, so that no connection is held by bytes that trickle in
// (a slowloris, with a token or without). Headers: a fixed deadline from the connection (or the previous
// request), enforced by node's HTTP server. Bodies the server parses (JSON): a total deadline from the
// headers. Streamed bodies (uploads, exec stdin): an inactivity deadline, so that an upload that keeps
// moving is never cut, however large. A body still arriving after the answer was sent (a refused request:
// node reads the rest to keep the connection) gets the total deadline again, from the answer. Expired: 408 `request_timeout` and the
// connection closed, or only the close when an answer has already begun. Answers are never timed: a quiet
// exec, a log follow, a WebSocket may last as long as they like once the request is in.
import type { ServerOptions } from "node:http";
import { Transform, type Readable } from "node:stream";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { CorralError } from "../protocol/errors.ts";
import { errorBodyIn, wireOf, type UnmatchedWire } from "./wire.ts";

export interface RequestDeadlines {
  /** From the connection (or the end of the previous request on it) to the end of the headers. */
  headersMs: number;
  /** From the headers to the last byte of a body the server parses (a total); also what the rest of any body may take once the answer is out. */
  bodyMs: number;
  /** The longest pause in a streamed body (uploads, exec stdin). */
  idleMs: number;
}

export const DEFAULT_DEADLINES: RequestDeadlines = { headersMs: 30_000, bodyMs: 30_000, idleMs: 60_000 };

/**
 * How a route's body is read: parsed by the app (the default), streamed by its handler (an upload), or the
 * input of a session whose answer streams back at the same time (exec stdin): a session's body is timed by
 * inactivity only until its answer begins; from then on the command is running and may wait for input as
 * long as it likes, like a shell (the client is authenticated by then, and could hold the connection with a
 * quiet command anyway).
 */
export type BodyMode = "parsed" | "stream" | "session";

declare module "fastify" {
  interface FastifyContextConfig {
    /** Set by installStreamingBodies for the routes of its scope (src/http/body-parsers.ts). */
    body?: BodyMode;
  }
}

/** Options for node's HTTP server (both listeners of the daemon use them): its headers deadline. */
export function serverTimeouts(deadlines: RequestDeadlines): ServerOptions {
  return {
    headersTimeout: deadlines.headersMs,
    // Bodies are timed per route below; node's own total would cut long uploads.
    requestTimeout: 0,
    // How often node looks for connections past the headers deadline (its default, 30 s, would let a
    // deadline of 30 s stretch to a minute).
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(deadlines.headersMs / 4))),
  };
}

function seconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

function hasBody(request: FastifyRequest): boolean {
  const length = request.headers["content-length"];
  if (request.headers["transfer-encoding"] !== undefined) return true;
  return length !== undefined && length !== "0";
}

/** A total deadline, or one on the longest pause. */
type ClockMode = "total" | "idle";

/** One request's body against its deadline. */
class BodyClock {
  private timer: NodeJS.Timeout;
  private lastProgress = performance.now();
  private stopped = false;
  private wrapper: Transform | undefined;
  /** Set once the deadline passed: the answer, instead of whatever error the reader raised. */
  expired: CorralError | undefined;

  constructor(
    private readonly request: FastifyRequest,
    private readonly reply: FastifyReply,
    private mode: ClockMode,
    private ms: number,
    /** How long the rest of a body may take to arrive once the answer is out. */
    private readonly drainMs: number,
    /** The body is a session's input: not timed once the answer has begun (see BodyMode). */
    private readonly session = false,
    /** The wire of paths no route matched, for a 408 sent from here (src/http/wire.ts). */
    private readonly unmatchedWire?: UnmatchedWire,
  ) {
    this.timer = setTimeout(() => this.check(), ms).unref();
    // Removed again in stop(): a keep-alive connection carries many requests.
    request.raw.socket.once("close", this.onSocketClose);
    reply.raw.once("finish", () => this.answered());
  }

  private readonly onSocketClose = (): void => this.stop();

  /** The body as the app reads it: the same bytes, counted as they pass. */
  wrap(payload: Readable): Readable {
    const wrapper = new Transform({
      transform: (chunk: Buffer, _encoding, done) => {
        this.lastProgress = performance.now();
        done(null, chunk);
      },
      flush: (done) => {
        this.stop();
        done();
      },
    });
    // Not stream.pipeline: destroying the wrapper on expiry must not destroy the request (and with it the
    // socket the 408 goes out on). A client that leaves still ends the wrapper, with its error.
    payload.on("error", (err) => wrapper.destroy(err));
    payload.once("close", () => {
      if (!this.request.raw.complete) wrapper.destroy(new CorralError("invalid_request", "The client closed the connection before the end of the body"));
    });
    payload.pipe(wrapper);
    this.wrapper = wrapper;
    return wrapper;
  }

  private stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.request.raw.socket.off("close", this.onSocketClose);
  }

  private check(): void {
    if (this.stopped || this.request.raw.complete) return this.stop();
    if (this.session && this.reply.raw.headersSent) return this.stop();
    const quiet = performance.now() - this.lastProgress;
    if (this.mode === "idle" && quiet < this.ms) {
      this.timer = setTimeout(() => this.check(), this.ms - quiet).unref();
      return;
    }
    this.expire();
  }

  /**
   * The answer is out but the body is still coming (a refusal before the body was read): let node read and
   * drop the rest, as it does to keep the connection, for at most drainMs more, however it moves (whoever
   * sent it, an unauthenticated client too, has its answer already).
   */
  private answered(): void {
    if (this.stopped || this.request.raw.complete) return this.stop();
    const raw = this.request.raw;
    if (this.wrapper) raw.unpipe(this.wrapper);
    raw.once("end", () => this.stop());
    raw.resume();
    this.mode = "total";
    this.ms = this.drainMs;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.check(), this.drainMs).unref();
  }

  private expire(): void {
    this.stop();
    const socket = this.request.raw.socket;
    const error = new CorralError(
      "request_timeout",
      this.mode === "idle"
        ? `The request body stopped arriving for ${seconds(this.ms)}: the connection is closed`
        : `The request body did not arrive within ${seconds(this.ms)}: the connection is closed`,
    );
    this.expired = error;
    this.request.log.info({ url: this.request.url, method: this.request.method }, error.message);
    // An answer already under way cannot become a 408: only the connection can end.
    if (this.reply.raw.headersSent) return void socket.destroy();
    if (!this.wrapper) {
      void this.reply
        .code(408)
        .header("connection", "close")
        .send(errorBodyIn(wireOf(this.request, this.unmatchedWire), error.toBody()));
      return;
    }
    // The reader (the JSON parser, or a handler streaming the body) fails with this; the error handler
    // answers the 408 whatever error the reader raised. A handler that never answers is cut a second later.
    this.wrapper.destroy(error);
    setTimeout(() => {
      if (!this.reply.raw.writableEnded) socket.destroy();
    }, 1000).unref();
  }
}

/** What the error handler asks: has this request's body run out of time (and so the answer is a 408)? */
export interface BodyDeadlines {
  expired(request: FastifyRequest): CorralError | undefined;
}

/**
 * Installs the body deadlines. Must come before access control: a request refused there still has its body
 * timed while node drains it.
 */
export function installBodyDeadlines(app: FastifyInstance, deadlines: RequestDeadlines, unmatchedWire?: UnmatchedWire): BodyDeadlines {
  const clocks = new WeakMap<FastifyRequest, BodyClock>();
  app.addHook("onRequest", async (request, reply) => {
    // An upgrade has no body: what follows its headers is the WebSocket's.
    if (!hasBody(request) || (request.raw as { upgrade?: boolean }).upgrade === true) return;
    const mode = request.is404 ? "parsed" : (request.routeOptions.config?.body ?? "parsed");
    const clock =
      mode === "parsed"
        ? new BodyClock(request, reply, "total", deadlines.bodyMs, deadlines.bodyMs, false, unmatchedWire)
        : new BodyClock(request, reply, "idle", deadlines.idleMs, deadlines.bodyMs, mode === "session", unmatchedWire);
    clocks.set(request, clock);
  });
  app.addHook("preParsing", async (request, _reply, payload) => clocks.get(request)?.wrap(payload) ?? payload);
  return { expired: (request) => clocks.get(request)?.expired };
}

/** The body a streaming route's handler reads (see installStreamingBodies): timed, or the raw request. */
export function bodyStream(request: FastifyRequest): Readable {
  const body = request.body as Readable | undefined;
  return body && typeof body.pipe === "function" ? body : request.raw;
}
