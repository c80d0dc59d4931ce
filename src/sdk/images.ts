// `client.images`: the daemon's image catalogue (list, show, remove, prune) and the ways images come in
// (import of a `docker save` tarball or an OCI archive, streamed; pull from a registry). With `onProgress`,
// an import or pull asks for the progress stream and reports each line as it comes.
import type { Readable } from "node:stream";
import type { ImageDetailBody, ImageProgressLine, ImportedImage, PruneResultBody, PullBody } from "../protocol/images-api.ts";
import { ndjson } from "./ndjson.ts";
import { CorralApiError, type Transport } from "./transport.ts";

export interface ImageProgress {
  stage: "step" | "skip" | "done";
  message: string;
}

export interface LongImageOptions {
  onProgress?: (progress: ImageProgress) => void;
  signal?: AbortSignal;
}

export class ImagesApi {
  constructor(private readonly transport: Transport) {}

  list(): Promise<ImageDetailBody[]> {
    return this.transport.json("GET", "/images");
  }

  show(name: string): Promise<ImageDetailBody> {
    return this.transport.json("GET", `/images/${encodeURIComponent(name)}`);
  }

  /** Fails with 409 `image_in_use` while a VM, template or commit uses one of its versions. */
  remove(name: string): Promise<ImageDetailBody> {
    return this.transport.json("DELETE", `/images/${encodeURIComponent(name)}`);
  }

  prune(): Promise<PruneResultBody> {
    return this.transport.json("POST", "/images/prune");
  }

  /** `archive`: a `docker save` tarball or an OCI archive (a tar of an OCI image layout), streamed. */
  import(name: string, archive: Readable | Buffer, options: LongImageOptions = {}): Promise<ImportedImage> {
    return this.long("POST", `/images/import?name=${encodeURIComponent(name)}`, archive, "application/x-tar", options);
  }

  pull(body: PullBody, options: LongImageOptions = {}): Promise<ImportedImage> {
    return this.long("POST", "/images/pull", JSON.stringify(body), "application/json", options);
  }

  private async long(method: "POST", path: string, body: Readable | Buffer | string, contentType: string, options: LongImageOptions): Promise<ImportedImage> {
    const headers: Record<string, string> = options.onProgress ? { accept: "application/x-ndjson" } : {};
    const response = await this.transport.send(method, path, { body, contentType, headers, signal: options.signal, timeoutMs: 0 });
    if (!options.onProgress) return (await response.body.json()) as ImportedImage;
    for await (const line of ndjson<ImageProgressLine>(response.body)) {
      if (line.type === "progress") options.onProgress({ stage: line.stage, message: line.message });
      else if (line.type === "image") return line.image;
      else throw new CorralApiError(line.status, line.code, line.error, method, path);
    }
    throw new CorralApiError(502, "host_bad_answer", "The daemon's progress stream ended without the image", method, path);
  }
}
