// `client.fs`: files in a VM. Copies stream both ways (pass a Readable, get a Readable); directory listings,
// stat, mkdir, remove; and watching paths as an async iterable of events.
import type { IncomingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import type { CopyMode } from "../protocol/copy-mode.ts";
import { decodeSourceName, SLICER_COPY_HEADERS } from "../protocol/copy-mode.ts";
import type { FsInfo, UploadResult, WatchEvent, WatchEventType } from "../protocol/files.ts";
import { SseParser } from "../protocol/sse.ts";
import { CorralApiError, queryString, type QueryValue, type Transport } from "./transport.ts";

export interface Ownership {
  uid?: number;
  gid?: number;
  /** Permission bits for the written file(s): a number (0o644) or octal text ("0644"). */
  permissions?: number | string;
}

export interface UploadOptions extends Ownership {
  /** Slicer's copy mode; without one the daemon picks binary or tar from the body's content type. */
  mode?: Exclude<CopyMode, "cp-v1-recursive">;
  /** cp-v1: the source's base name, used when the destination is an existing directory. */
  sourceName?: string;
  /** cp-v1 tar: unpack into the destination itself even when it exists (like `cp -r src/. dst`). */
  copyContents?: boolean;
  /** cp-v1 tar: glob patterns of entries to leave out. */
  exclude?: string[];
  signal?: AbortSignal;
}

export interface DownloadOptions {
  mode?: CopyMode;
  exclude?: string[];
  signal?: AbortSignal;
}

/** A copy out of a VM: its body, unread, and what the daemon said about it. */
export interface Download {
  body: Readable;
  /** `file` or `directory` (cp-v1 modes only). */
  sourceType?: "file" | "directory";
  /** The source's base name (cp-v1 modes only). */
  sourceName?: string;
  /** The file's permission bits (binary downloads). */
  fileMode?: number;
  /** The size in bytes, when known in advance. */
  size?: number;
}

export interface WatchOptions {
  paths: string[];
  recursive?: boolean;
  events?: WatchEventType[];
  patterns?: string[];
  /** Go durations, e.g. "100ms", "5m". */
  debounce?: string;
  timeout?: string;
  maxEvents?: number;
  oneShot?: boolean;
  /** Numbering continues after this id. */
  lastEventId?: number;
  uid?: number;
  signal?: AbortSignal;
}

function vmPath(hostname: string, rest: string): string {
  return `/vm/${encodeURIComponent(hostname)}${rest}`;
}

function octal(permissions: number | string | undefined): string | undefined {
  if (permissions === undefined) return undefined;
  return typeof permissions === "number" ? permissions.toString(8).padStart(4, "0") : permissions;
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

export class FilesApi {
  constructor(private readonly transport: Transport) {}

  /** Writes `data` to exactly `path` in the VM (created or replaced; missing parents are created). */
  writeFile(hostname: string, path: string, data: Readable | Buffer | string, options: Ownership & { signal?: AbortSignal } = {}): Promise<UploadResult> {
    return this.upload(hostname, path, typeof data === "string" ? Buffer.from(data) : data, { ...options, mode: "binary" });
  }

  /** The file's content as a stream (binary mode), with its permission bits. */
  readFile(hostname: string, path: string, options: { signal?: AbortSignal } = {}): Promise<Download> {
    return this.download(hostname, path, { mode: "binary", signal: options.signal });
  }

  /** Unpacks a tar into `path` (created when missing). */
  tarTo(hostname: string, path: string, tar: Readable | Buffer, options: Ownership & { signal?: AbortSignal } = {}): Promise<UploadResult> {
    return this.upload(hostname, path, tar, { ...options, mode: "tar" });
  }

  /** A tar of `path`, the directory's own name as the top entry (`dir/`, `dir/a`, ...). */
  tarFrom(hostname: string, path: string, options: { exclude?: string[]; signal?: AbortSignal } = {}): Promise<Download> {
    return this.download(hostname, path, { mode: "tar", ...options });
  }

  /** Any upload: the body streams to the guest; resolves once it is written there. */
  async upload(hostname: string, path: string, body: Readable | Buffer, options: UploadOptions = {}): Promise<UploadResult> {
    const isTar = options.mode === undefined ? false : options.mode.endsWith("tar");
    const query: Record<string, QueryValue> = {
      path,
      mode: options.mode,
      uid: options.uid,
      gid: options.gid,
      permissions: octal(options.permissions),
      exclude: options.exclude,
    };
    if (options.mode?.startsWith("cp-v1")) {
      Object.assign(query, {
        copy_semantics: "cp-v1",
        source_name: options.sourceName,
        source_type: isTar ? "directory" : "file",
        copy_contents: options.copyContents || undefined,
      });
    }
    const response = await this.transport.send("POST", vmPath(hostname, `/cp${queryString(query)}`), {
      body,
      contentType: isTar ? "application/x-tar" : "application/octet-stream",
      signal: options.signal,
      timeoutMs: 0,
    });
    return (await response.body.json()) as UploadResult;
  }

  /** Any download: resolves once the guest found the source, with the body still to read. */
  async download(hostname: string, path: string, options: DownloadOptions = {}): Promise<Download> {
    const query = queryString({ path, mode: options.mode, copy_semantics: options.mode?.startsWith("cp-v1") ? "cp-v1" : undefined, exclude: options.exclude });
    const response = await this.transport.send("GET", vmPath(hostname, `/cp${query}`), { signal: options.signal, timeoutMs: 0 });
    const download: Download = { body: response.body };
    const type = header(response.headers, SLICER_COPY_HEADERS.sourceType);
    if (type === "file" || type === "directory") download.sourceType = type;
    const name = header(response.headers, SLICER_COPY_HEADERS.sourceNameBase64);
    if (name) download.sourceName = decodeSourceName(name);
    const mode = header(response.headers, SLICER_COPY_HEADERS.fileMode);
    if (mode) download.fileMode = Number.parseInt(mode, 8);
    const length = header(response.headers, "content-length");
    if (length) download.size = Number(length);
    return download;
  }

  readdir(hostname: string, path: string): Promise<FsInfo[]> {
    return this.transport.json("GET", vmPath(hostname, `/fs/readdir${queryString({ path })}`));
  }

  /** The path's description, or null when it does not exist. */
  async stat(hostname: string, path: string): Promise<FsInfo | null> {
    try {
      return await this.transport.json<FsInfo>("GET", vmPath(hostname, `/fs/stat${queryString({ path })}`));
    } catch (err) {
      if (err instanceof CorralApiError && err.code === "file_not_found") return null;
      throw err;
    }
  }

  async mkdir(hostname: string, path: string, options: { recursive?: boolean; mode?: number | string } = {}): Promise<void> {
    await this.transport.json("POST", vmPath(hostname, "/fs/mkdir"), { path, recursive: options.recursive, mode: octal(options.mode) });
  }

  async remove(hostname: string, path: string, options: { recursive?: boolean } = {}): Promise<void> {
    await this.transport.json("DELETE", vmPath(hostname, `/fs/remove${queryString({ path, recursive: options.recursive ?? false })}`));
  }

  /** Changes below `paths`, as they happen, until the watch's limit or timeout (or `signal`) ends it. */
  async *watch(hostname: string, options: WatchOptions): AsyncGenerator<WatchEvent> {
    const query = queryString({
      paths: options.paths,
      recursive: options.recursive,
      events: options.events,
      patterns: options.patterns,
      debounce: options.debounce,
      timeout: options.timeout,
      max_events: options.maxEvents,
      one_shot: options.oneShot,
      uid: options.uid,
    });
    const response = await this.transport.send("GET", vmPath(hostname, `/fs/watch${query}`), {
      headers: { accept: "text/event-stream", ...(options.lastEventId !== undefined ? { "last-event-id": String(options.lastEventId) } : {}) },
      signal: options.signal,
      timeoutMs: 0,
    });
    const parser = new SseParser();
    response.body.setEncoding("utf8");
    try {
      for await (const chunk of response.body as AsyncIterable<string>) {
        for (const message of parser.push(chunk)) yield JSON.parse(message.data) as WatchEvent;
      }
    } finally {
      response.body.destroy();
    }
  }
}
