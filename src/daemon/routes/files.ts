// POST|GET /vm/HOST/cp: copies into and out of a VM, in Slicer's legacy modes (`binary`, `tar`), its cp-v1
// modes, or chosen from Content-Type/Accept when no mode is given. Bodies stream both ways.
import { constants as h2 } from "node:http2";
import { downloadShape, isSourceName, SLICER_COPY_HEADERS, uploadShape } from "../../protocol/copy-mode.ts";
import { CorralError } from "../../protocol/errors.ts";
import { CopyQuerySchema, parseOctalMode, type CopyQuery, type DownloadSpec, type UploadSpec } from "../../protocol/files.ts";
import { VmParams } from "../../protocol/slicer.ts";
import { GuestFiles } from "../files/guest-files.ts";
import { installStreamingBodies } from "../../http/body-parsers.ts";
import { bodyStream } from "../../http/deadlines.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";

function asList(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map((item) => item.trim()).filter(Boolean);
}

export function uploadSpecFromQuery(query: CopyQuery, contentType: string | undefined): UploadSpec {
  const shape = uploadShape(query.mode, contentType);
  const spec: UploadSpec = { path: query.path, ...shape, exclude: asList(query.exclude) };
  if (query.uid !== undefined) spec.uid = query.uid;
  if (query.gid !== undefined) spec.gid = query.gid;
  if (query.permissions !== undefined) spec.permissions = parseOctalMode(query.permissions);
  if (shape.placement === "cp-v1") {
    const expected = shape.format === "file" ? "file" : "directory";
    if (query.source_type !== undefined && query.source_type !== expected) {
      throw new CorralError("invalid_request", `Invalid query parameter "source_type": "${query.source_type}" does not fit mode=${query.mode} (expected "${expected}")`);
    }
    if (query.source_name !== undefined && query.source_name !== "") {
      if (!isSourceName(query.source_name)) {
        throw new CorralError("invalid_request", `Invalid query parameter "source_name" ${JSON.stringify(query.source_name)}: it must be one file name, without "/"`);
      }
      spec.sourceName = query.source_name;
    }
    if (query.copy_contents) spec.copyContents = true;
  }
  return spec;
}

export function downloadSpecFromQuery(query: CopyQuery, accept: string | undefined): DownloadSpec {
  return { path: query.path, ...downloadShape(query.mode, accept), exclude: asList(query.exclude) };
}

/** Headers of the guest's answer that mean something to the client. */
const FORWARDED = [
  h2.HTTP2_HEADER_CONTENT_TYPE,
  h2.HTTP2_HEADER_CONTENT_LENGTH,
  SLICER_COPY_HEADERS.fileMode,
  SLICER_COPY_HEADERS.sourceType,
  SLICER_COPY_HEADERS.sourceNameBase64,
  SLICER_COPY_HEADERS.sourceName,
];

/** An AbortSignal that fires when the client goes away before the answer is complete. */
function clientGone(raw: { on(event: "close", listener: () => void): unknown; writableFinished: boolean }): AbortSignal {
  const cancel = new AbortController();
  raw.on("close", () => {
    if (!raw.writableFinished) cancel.abort();
  });
  return cancel.signal;
}

export function fileRoutes(app: DaemonApp, ctx: DaemonContext): void {
  const files = new GuestFiles(ctx.manager);

  // Its own encapsulated context: an upload's body is streamed to the guest, never parsed.
  app.register(async (scope) => {
    installStreamingBodies(scope);
    const typed = scope as DaemonApp;
    const schema = { params: VmParams, querystring: CopyQuerySchema };

    // A refused upload is answered at once; node then reads the rest of its body to discard it (closing the
    // connection instead would make clients such as undici see EPIPE rather than the answer).
    typed.post("/vm/:hostname/cp", { schema }, async (request, reply) => {
      const spec = uploadSpecFromQuery(request.query, request.headers["content-type"]);
      return files.upload(request.params.hostname, spec, bodyStream(request), clientGone(reply.raw));
    });

    typed.get("/vm/:hostname/cp", { schema }, async (request, reply) => {
      const spec = downloadSpecFromQuery(request.query, request.headers.accept);
      const download = await files.download(request.params.hostname, spec, clientGone(reply.raw));
      for (const name of FORWARDED) {
        const value = download.headers[name];
        if (value !== undefined) reply.header(name, value);
      }
      reply.header("cache-control", "no-store");
      return reply.send(download.stream);
    });
  });
}
