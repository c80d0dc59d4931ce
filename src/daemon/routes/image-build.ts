// POST /images/build?name=NAME[&dockerfile=PATH][&build_arg=K=V...][&no_cache=true]: a Dockerfile build.
// The body is the build context as an uncompressed tar, unpacked to disk as it arrives. Whatever fails
// before the first step (the context, the Dockerfile, FROM, a COPY source) is an ordinary error answer and
// no VM was booted; after that the answer is NDJSON progress (src/protocol/image-build.ts) ending in
// `done` or `error`. A client that leaves cancels the build: its builder VM is removed, nothing installed.
import { once } from "node:events";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { installStreamingBodies } from "../../http/body-parsers.ts";
import { bodyStream } from "../../http/deadlines.ts";
import { CorralError } from "../../protocol/errors.ts";
import { ImageBuildQuerySchema, type BuildEvent } from "../../protocol/image-build.ts";
import { BuildContext, BUILDS_DIR } from "../builds/build-context.ts";
import { ImageBuilder } from "../builds/image-builder.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";

function buildArgs(value: string | string[] | undefined): Record<string, string> {
  const args: Record<string, string> = {};
  for (const entry of value === undefined ? [] : Array.isArray(value) ? value : [value]) {
    const eq = entry.indexOf("=");
    args[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return args;
}

export function imageBuildRoutes(app: DaemonApp, ctx: DaemonContext): void {
  const builder = new ImageBuilder({ manager: ctx.manager, images: ctx.images, log: app.log });
  app.register(async (scope) => {
    installStreamingBodies(scope, "stream");
    const typed = scope as DaemonApp;
    typed.post("/images/build", { schema: { querystring: ImageBuildQuerySchema } }, async (request, reply) => {
      const cancel = new AbortController();
      reply.raw.on("close", () => {
        if (!reply.raw.writableFinished) cancel.abort(new CorralError("client_closed_request", "The client left before the build finished"));
      });
      // In this daemon's state directory: a build cut short by a stop leaves its context where the next start clears it.
      const builds = join(ctx.stateDir, BUILDS_DIR);
      await mkdir(builds, { recursive: true, mode: 0o700 });
      const work = await mkdtemp(join(builds, "context-"));
      let streaming = false;
      try {
        const dockerfile = request.query.dockerfile ?? "Dockerfile";
        const context = await BuildContext.receive(bodyStream(request), work, dockerfile);
        const prepared = await builder.prepare(
          { name: request.query.name, dockerfile, buildArgs: buildArgs(request.query.build_arg), noCache: request.query.no_cache ?? false },
          context,
        );
        cancel.signal.throwIfAborted();
        const out = new PassThrough();
        // Backpressure: a RUN that prints fast waits for a slow client instead of piling up in memory.
        // A client gone mid-build destroys the stream: later events are dropped, never an unhandled error.
        out.on("error", () => undefined);
        const left = new Promise<void>((resolve) => cancel.signal.addEventListener("abort", () => resolve(), { once: true }));
        const emit = async (event: BuildEvent): Promise<void> => {
          if (out.destroyed) return;
          if (!out.write(`${JSON.stringify(event)}\n`) && !cancel.signal.aborted) {
            await Promise.race([once(out, "drain"), left]).catch(() => undefined);
          }
        };
        reply.header("content-type", "application/x-ndjson").header("cache-control", "no-store");
        void reply.send(out);
        streaming = true;
        try {
          const image = await builder.run(prepared, emit, cancel.signal);
          request.log.info({ image: image.name, version: image.version }, "Image built from a Dockerfile");
        } catch (err) {
          if (cancel.signal.aborted) request.log.info({ image: request.query.name }, "Image build cancelled: the client left");
          else if (err instanceof CorralError) void emit({ type: "error", error: err.message, code: err.code });
          else {
            request.log.error({ err, image: request.query.name }, "Image build failed");
            void emit({
              type: "error",
              error: `The build of image ${JSON.stringify(request.query.name)} failed: internal error (the daemon's log has the cause)`,
              code: "internal",
            });
          }
        } finally {
          out.end();
        }
        return reply;
      } finally {
        await rm(work, { recursive: true, force: true });
        if (!streaming) bodyStream(request).resume();
      }
    });
  });
}
