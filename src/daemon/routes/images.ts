// The image catalogue (GET /images, GET|DELETE /images/NAME, POST /images/prune) and the ways images come in:
// POST /images/import (a `docker save` tarball or an OCI archive as the body, streamed to disk) and POST
// /images/pull (JSON: a registry reference and its credentials). An import or pull is a long request: with
// `Accept: application/x-ndjson` the answer is a stream of progress lines ending in the image or the error
// (the status is then 200 and the error is in the last line); otherwise a plain 201 with the new version,
// or the error's own 4xx/5xx.
import type { FastifyReply, FastifyRequest } from "fastify";
import { CorralError } from "../../protocol/errors.ts";
import {
  ImageDetailSchema,
  ImageParams,
  ImportedImageSchema,
  ImportQuerySchema,
  PruneResultSchema,
  PullBodySchema,
  type ImageProgressLine,
  type ImportedImage,
} from "../../protocol/images-api.ts";
import { Type } from "@sinclair/typebox";
import type { ImageCatalogue, ImageVersion, Progress } from "../../image/index.ts";
import { installStreamingBodies } from "../../http/body-parsers.ts";
import { bodyStream } from "../../http/deadlines.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";

async function describe(catalogue: ImageCatalogue, image: ImageVersion): Promise<ImportedImage> {
  const detail = await catalogue.show(image.name);
  const version = detail.versions.find((v) => v.version === image.version);
  if (!version) throw new CorralError("internal", `Image ${JSON.stringify(image.name)} version ${image.version} vanished after its import`);
  return { name: image.name, ...version };
}

function wantsProgress(request: FastifyRequest): boolean {
  return (request.headers.accept ?? "").includes("application/x-ndjson");
}

/** Runs an import or pull, answering plainly or as a progress stream (see the top of this file). */
async function answerLong(
  request: FastifyRequest,
  reply: FastifyReply,
  catalogue: ImageCatalogue,
  work: (progress: Progress, signal: AbortSignal) => Promise<ImageVersion>,
): Promise<FastifyReply> {
  const cancel = new AbortController();
  reply.raw.on("close", () => {
    if (!reply.raw.writableFinished) cancel.abort();
  });
  if (!wantsProgress(request)) {
    const image = await work({ step() {}, skip() {}, done() {} }, cancel.signal);
    return reply.code(201).send(await describe(catalogue, image));
  }
  reply.hijack();
  const raw = reply.raw;
  raw.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
  const line = (value: ImageProgressLine): void => {
    if (!raw.destroyed) raw.write(`${JSON.stringify(value)}\n`);
  };
  const progress: Progress = {
    step: (message) => line({ type: "progress", stage: "step", message }),
    skip: (message) => line({ type: "progress", stage: "skip", message }),
    done: (message) => line({ type: "progress", stage: "done", message }),
  };
  try {
    const image = await work(progress, cancel.signal);
    line({ type: "image", image: await describe(catalogue, image) });
  } catch (err) {
    const known = err instanceof CorralError ? err : undefined;
    if (!known) request.log.error({ err }, "image import failed");
    line({ type: "error", status: known?.status ?? 500, code: known?.code ?? "internal", error: known?.message ?? "The import failed unexpectedly (see the daemon's log)" });
  }
  raw.end();
  return reply;
}

export function imageRoutes(app: DaemonApp, ctx: DaemonContext): void {
  const { catalogue, imports } = ctx;

  app.get("/images", { schema: { response: { 200: Type.Array(ImageDetailSchema) } } }, async () => catalogue.list());

  app.get("/images/:name", { schema: { params: ImageParams, response: { 200: ImageDetailSchema } } }, async (request) => catalogue.show(request.params.name));

  app.delete("/images/:name", { schema: { params: ImageParams, response: { 200: ImageDetailSchema } } }, async (request) => {
    const name = request.params.name;
    // A VM of this daemon whose disk is still being made is not on disk yet: its record says it all the same.
    const creating = ctx.manager.list().filter((vm) => vm.image === name);
    const detail = await catalogue.show(name);
    const onDisk = new Set(detail.versions.flatMap((v) => v.used_by.filter((u) => u.kind === "vm" && u.state_dir === ctx.stateDir).map((u) => u.id)));
    const pending = creating.filter((vm) => !onDisk.has(vm.hostname));
    if (pending.length > 0) {
      throw new CorralError(
        "image_in_use",
        `Cannot remove image ${JSON.stringify(name)}: in use by vm ${pending
          .slice(0, 5)
          .map((vm) => JSON.stringify(vm.hostname))
          .join(", ")}`,
      );
    }
    return catalogue.remove(name);
  });

  app.post("/images/prune", { schema: { response: { 200: PruneResultSchema } } }, async () => catalogue.prune());

  app.post("/images/pull", { schema: { body: PullBodySchema, response: { 201: ImportedImageSchema } } }, async (request, reply) => {
    const body = request.body;
    if ((body.username === undefined) !== (body.password === undefined)) {
      throw new CorralError("invalid_request", 'Give both "username" and "password" for a registry that wants them, or neither');
    }
    const auth = body.username !== undefined && body.password !== undefined ? { username: body.username, password: body.password } : undefined;
    return answerLong(request, reply, catalogue, (progress, signal) =>
      imports.pull({ reference: body.reference, name: body.name, auth, insecure: body.insecure }, progress, signal),
    );
  });

  // Its own encapsulated context: the archive is the body, streamed to disk, never parsed.
  app.register(async (scope) => {
    installStreamingBodies(scope);
    const typed = scope as DaemonApp;
    typed.post("/images/import", { schema: { querystring: ImportQuerySchema, response: { 201: ImportedImageSchema } } }, async (request, reply) => {
      const body = bodyStream(request);
      return answerLong(request, reply, catalogue, (progress, signal) => imports.importArchive(request.query.name, body, progress, signal));
    });
  });
}
