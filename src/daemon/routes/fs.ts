// /vm/HOST/fs/*: list, describe, create and remove paths in a VM, and watch them change (Server-Sent Events
// relayed from the guest as they come).
import { constants as h2, type ClientHttp2Stream } from "node:http2";
import { PassThrough, type Readable } from "node:stream";
import { Type } from "@sinclair/typebox";
import { parseDuration } from "../../protocol/duration.ts";
import { CorralError } from "../../protocol/errors.ts";
import { FsInfoSchema, FsMkdirBodySchema, FsPathQuerySchema, FsRemoveQuerySchema, FsWatchQuerySchema, type FsWatchQuery, type WatchSpec } from "../../protocol/files.ts";
import { VmParams } from "../../protocol/slicer.ts";
import { GuestFiles } from "../files/guest-files.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";

/** How long a filesystem call may wait for the agent (a slow guest under emulation included). */
const FS_CALL_MS = 60_000;

function asList<T extends string>(value: T | T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

export function watchSpecFromQuery(query: FsWatchQuery, lastEventId: string | string[] | undefined): WatchSpec {
  const paths = asList(query.paths).filter((p) => p !== "");
  if (paths.length === 0) throw new CorralError("invalid_request", 'Missing query parameter "paths": name a path to watch (repeat it for more)');
  const lastId = typeof lastEventId === "string" ? lastEventId.trim() : "";
  if (lastId !== "" && !/^\d{1,15}$/.test(lastId)) {
    throw new CorralError("invalid_request", `Invalid header "Last-Event-ID" ${JSON.stringify(lastId)}: it must be the id of an event`);
  }
  return {
    paths,
    recursive: query.recursive ?? false,
    events: [...new Set(asList(query.events))],
    patterns: asList(query.patterns).filter((p) => p.trim() !== ""),
    debounceMs: query.debounce ? parseDuration(query.debounce, "debounce") : 0,
    timeoutMs: query.timeout ? parseDuration(query.timeout, "timeout") : 0,
    maxEvents: query.one_shot ? 1 : (query.max_events ?? 0),
    lastEventId: lastId === "" ? 0 : Number(lastId),
    ...(query.uid !== undefined ? { uid: query.uid } : {}),
  };
}

/** Relays `events` until `ms` have passed, then ends the answer and cancels the watch in the guest. */
export function endAfter(events: ClientHttp2Stream, ms: number): Readable {
  const relay = new PassThrough();
  const timer = setTimeout(() => {
    events.unpipe(relay);
    relay.end();
  }, ms);
  events.pipe(relay);
  events.on("end", () => clearTimeout(timer));
  relay.on("close", () => {
    clearTimeout(timer);
    // close() and not AgentResponse.cancel(): a watch request has no body (it ended with its headers), so
    // there is no END_STREAM left to send first; close() sends the reset alone.
    if (!events.closed) events.close(h2.NGHTTP2_CANCEL);
  });
  return relay;
}

export function fsRoutes(app: DaemonApp, ctx: DaemonContext): void {
  const files = new GuestFiles(ctx.manager);

  app.get("/vm/:hostname/fs/readdir", { schema: { params: VmParams, querystring: FsPathQuerySchema, response: { 200: Type.Array(FsInfoSchema) } } }, async (request) => {
    return files.readdir(request.params.hostname, request.query.path, AbortSignal.timeout(FS_CALL_MS));
  });

  app.get("/vm/:hostname/fs/stat", { schema: { params: VmParams, querystring: FsPathQuerySchema, response: { 200: FsInfoSchema } } }, async (request) => {
    return files.stat(request.params.hostname, request.query.path, AbortSignal.timeout(FS_CALL_MS));
  });

  app.post("/vm/:hostname/fs/mkdir", { schema: { params: VmParams, body: FsMkdirBodySchema } }, async (request) => {
    return files.mkdir(request.params.hostname, request.body, AbortSignal.timeout(FS_CALL_MS));
  });

  app.delete("/vm/:hostname/fs/remove", { schema: { params: VmParams, querystring: FsRemoveQuerySchema } }, async (request) => {
    return files.remove(request.params.hostname, request.query.path, request.query.recursive ?? false, AbortSignal.timeout(FS_CALL_MS));
  });

  app.get("/vm/:hostname/fs/watch", { schema: { params: VmParams, querystring: FsWatchQuerySchema } }, async (request, reply) => {
    const spec = watchSpecFromQuery(request.query, request.headers["last-event-id"]);
    // The timeout is kept here, by the host's clock: a guest's clock can run fast (about 1.3x under TCG).
    const events = await files.watch(request.params.hostname, { ...spec, timeoutMs: 0 }, AbortSignal.timeout(FS_CALL_MS));
    reply.header("content-type", "text/event-stream").header("cache-control", "no-store").header("x-accel-buffering", "no");
    return reply.send(spec.timeoutMs > 0 ? endAfter(events, spec.timeoutMs) : events);
  });
}
