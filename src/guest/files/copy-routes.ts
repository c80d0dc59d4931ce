// The agent's copy routes: an upload (the request body is a file's bytes or a tar) and a download (the
// response body is). Both stream with HTTP/2 flow control: nothing is held whole in memory.
import type { Stats } from "node:fs";
import { open, stat } from "node:fs/promises";
import { constants as h2, type OutgoingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { basename } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { packTree } from "../../archive/index.ts";
import { encodeSourceName, SLICER_COPY_HEADERS } from "../../protocol/copy-mode.ts";
import { AGENT_FILE_PATHS, COPY_SPEC_HEADER, formatOctalMode, type DownloadSpec, type UploadSpec } from "../../protocol/files.ts";
import { AgentRouteError, jsonHeader, sendJson } from "../http.ts";
import type { AgentRouter } from "../router.ts";
import { fsError } from "./fs-errors.ts";
import { resolveGuestPath } from "./guest-paths.ts";
import { receiveFile, receiveTree } from "./upload.ts";

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((item) => typeof item === "string");
}

export function parseUploadSpec(value: string | string[] | undefined): UploadSpec {
  const spec = jsonHeader<UploadSpec>(value, COPY_SPEC_HEADER);
  if (typeof spec?.path !== "string" || !["file", "tar"].includes(spec.format) || !["exact", "cp-v1"].includes(spec.placement) || !isStringList(spec.exclude)) {
    throw new AgentRouteError(400, "invalid_request", `Header ${COPY_SPEC_HEADER} is not an upload spec`);
  }
  return spec;
}

export function parseDownloadSpec(value: string | string[] | undefined): DownloadSpec {
  const spec = jsonHeader<DownloadSpec>(value, COPY_SPEC_HEADER);
  if (typeof spec?.path !== "string" || !["file", "tar", "auto"].includes(spec.format) || !["named", "contents"].includes(spec.layout) || !isStringList(spec.exclude)) {
    throw new AgentRouteError(400, "invalid_request", `Header ${COPY_SPEC_HEADER} is not a download spec`);
  }
  return spec;
}

/** cp-v1's description of what a download carries; the clear-text name only when a header can hold it. */
function sourceHeaders(type: "file" | "directory", name: string): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { [SLICER_COPY_HEADERS.sourceType]: type };
  if (name !== "") headers[SLICER_COPY_HEADERS.sourceNameBase64] = encodeSourceName(name);
  if (/^[\x20-\x7e]+$/.test(name)) headers[SLICER_COPY_HEADERS.sourceName] = name;
  return headers;
}

/** Streams `body` as the response; a failure after the headers went out resets the stream (a cut copy shows). */
async function sendBody(stream: ServerHttp2Stream, headers: OutgoingHttpHeaders, body: Readable): Promise<void> {
  if (stream.destroyed || stream.closed) {
    body.destroy(); // the host went away meanwhile
    return;
  }
  stream.respond({ [h2.HTTP2_HEADER_STATUS]: 200, ...headers });
  try {
    await pipeline(body, stream);
  } catch {
    // A reset alone: stream.close(code) would end the answer first, and a cut download would look complete.
    if (!stream.destroyed) stream.destroy(new Error("The download failed before its end"));
  }
}

// Each read is a thread-pool round trip (about 0.3 ms under emulation): fewer, larger reads than the 64 KiB
// default. Still a stream: at most this much of the file is in memory.
const READ_CHUNK = 1024 * 1024;

async function sendFile(stream: ServerHttp2Stream, path: string, stats: Stats, spec: DownloadSpec): Promise<void> {
  if (!stats.isFile()) throw new AgentRouteError(400, "invalid_request", `Cannot copy ${JSON.stringify(path)}: it is not a regular file`);
  const handle = await open(path, "r");
  const headers: OutgoingHttpHeaders = {
    [h2.HTTP2_HEADER_CONTENT_TYPE]: "application/octet-stream",
    [SLICER_COPY_HEADERS.fileMode]: formatOctalMode(stats.mode & 0o777),
    ...(spec.cpV1 ? sourceHeaders("file", basename(path)) : {}),
  };
  // The size when asked for is what is sent (a growing log is cut there); files such as /proc's claim 0
  // bytes and are read to their end instead.
  if (stats.size > 0) headers[h2.HTTP2_HEADER_CONTENT_LENGTH] = stats.size;
  await sendBody(stream, headers, handle.createReadStream(stats.size > 0 ? { start: 0, end: stats.size - 1, highWaterMark: READ_CHUNK } : { highWaterMark: READ_CHUNK }));
}

async function sendTree(stream: ServerHttp2Stream, path: string, stats: Stats, spec: DownloadSpec): Promise<void> {
  if (spec.cpV1 && !stats.isDirectory()) {
    throw new AgentRouteError(400, "invalid_request", `Cannot copy ${JSON.stringify(path)} as a directory: it is a file (use mode=cp-v1-binary or cp-v1-recursive)`);
  }
  const name = basename(path);
  const headers: OutgoingHttpHeaders = {
    [h2.HTTP2_HEADER_CONTENT_TYPE]: "application/x-tar",
    ...(spec.cpV1 ? sourceHeaders("directory", name) : {}),
  };
  const topName = spec.layout === "named" && name !== "" ? name : undefined;
  await sendBody(stream, headers, packTree(path, { topName, exclude: spec.exclude }));
}

export function registerCopyRoutes(router: AgentRouter): void {
  router.add("POST", AGENT_FILE_PATHS.upload, async ({ stream, headers }) => {
    const spec = parseUploadSpec(headers[COPY_SPEC_HEADER]);
    // A stream the host resets still *ends* its readable side (node pushes the end on RST_STREAM): without
    // this, a copy cut off halfway would be taken as complete and replace the file.
    stream.once("aborted", () => stream.destroy(new Error("The upload was cut off before its end")));
    try {
      const result = spec.format === "file" ? await receiveFile(stream, spec) : await receiveTree(stream, spec);
      sendJson(stream, 200, result);
    } catch (err) {
      throw fsError(err, "copy to", spec.path);
    }
  });

  router.add("GET", AGENT_FILE_PATHS.download, async ({ stream, headers }) => {
    const spec = parseDownloadSpec(headers[COPY_SPEC_HEADER]);
    const path = resolveGuestPath(spec.path);
    try {
      const stats = await stat(path);
      const asTar = spec.format === "tar" || (spec.format === "auto" && stats.isDirectory());
      if (!asTar && stats.isDirectory()) {
        // Slicer's Go SDK looks for this phrase to retry a directory as a tar.
        throw new AgentRouteError(400, "invalid_request", `Cannot copy ${JSON.stringify(path)} in binary mode: must specify a file not a directory (use mode=tar)`);
      }
      await (asTar ? sendTree(stream, path, stats, spec) : sendFile(stream, path, stats, spec));
    } catch (err) {
      throw fsError(err, "copy", path);
    }
  });
}
