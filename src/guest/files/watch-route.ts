// GET /v1/fs/watch: Server-Sent Events for changes below some paths, until the timeout, the event limit or
// the host closing the stream. A comment line goes out once the watches are in place, then every 15 s.
import { constants as h2 } from "node:http2";
import { AGENT_FILE_PATHS, WATCH_EVENT_TYPES, WATCH_SPEC_HEADER, type WatchSpec } from "../../protocol/files.ts";
import { formatSseComment } from "../../protocol/sse.ts";
import { AgentRouteError, jsonHeader } from "../http.ts";
import type { AgentRouter } from "../router.ts";
import { fsError } from "./fs-errors.ts";
import { resolveGuestPath } from "./guest-paths.ts";
import { TreeWatch, WatchLimitError } from "./tree-watch.ts";
import { WatchSession } from "./watch-session.ts";

export const HEARTBEAT_MS = 15_000;

export function parseWatchSpec(value: string | string[] | undefined): WatchSpec {
  const spec = jsonHeader<WatchSpec>(value, WATCH_SPEC_HEADER);
  const numbers = [spec?.debounceMs, spec?.timeoutMs, spec?.maxEvents, spec?.lastEventId];
  const valid =
    Array.isArray(spec?.paths) &&
    spec.paths.every((p) => typeof p === "string") &&
    Array.isArray(spec.patterns) &&
    Array.isArray(spec.events) &&
    spec.events.every((e) => (WATCH_EVENT_TYPES as readonly string[]).includes(e)) &&
    numbers.every((n) => Number.isSafeInteger(n) && (n as number) >= 0);
  if (!valid) throw new AgentRouteError(400, "invalid_request", `Header ${WATCH_SPEC_HEADER} is not a watch spec`);
  if (spec.paths.length === 0) throw new AgentRouteError(400, "invalid_request", 'Missing "paths": name at least one path to watch');
  return spec;
}

export function registerWatchRoute(router: AgentRouter): void {
  router.add("GET", AGENT_FILE_PATHS.watch, async ({ stream, headers }) => {
    const spec = parseWatchSpec(headers[WATCH_SPEC_HEADER]);
    const roots = spec.paths.map((path) => resolveGuestPath(path, "paths", spec.uid ?? 0));
    let opened = false;
    const early: string[] = [];
    let heartbeat: ReturnType<typeof setInterval> | undefined;
    let deadline: ReturnType<typeof setTimeout> | undefined;
    const session = new WatchSession(spec, {
      write: (text) => {
        if (!opened)
          early.push(text); // changes seen while the other watches were still being set up
        else if (!stream.destroyed) stream.write(text);
        return stream.writableLength;
      },
      end: () => stop(),
    });
    const tree = new TreeWatch(roots, spec.recursive, (event) => session.accept(event));
    function stop(): void {
      clearInterval(heartbeat);
      clearTimeout(deadline);
      tree.close();
      session.close();
      if (opened && !stream.destroyed && !stream.writableEnded) stream.end();
    }
    try {
      await tree.start();
    } catch (err) {
      stop();
      if (err instanceof WatchLimitError) throw new AgentRouteError(400, "invalid_request", err.message);
      throw fsError(err, "watch", (err as NodeJS.ErrnoException).path ?? roots.join(", "));
    }
    if (stream.destroyed) return stop();
    stream.on("close", stop);
    stream.respond({ [h2.HTTP2_HEADER_STATUS]: 200, [h2.HTTP2_HEADER_CONTENT_TYPE]: "text/event-stream", [h2.HTTP2_HEADER_CACHE_CONTROL]: "no-store" });
    stream.write(formatSseComment(`watching ${roots.join(", ")}`));
    opened = true;
    for (const text of early) stream.write(text);
    if (session.finished) return stop();
    heartbeat = setInterval(() => stream.write(formatSseComment("heartbeat")), HEARTBEAT_MS);
    if (spec.timeoutMs > 0) deadline = setTimeout(stop, spec.timeoutMs);
  });
}
