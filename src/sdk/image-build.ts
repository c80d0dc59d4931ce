// Image builds through the daemon: a build context packed from a local folder (honouring its .dockerignore,
// streamed, never held whole in memory) and the build's progress read as it comes.
import { readFileSync } from "node:fs";
import type { Readable } from "node:stream";
import { packTree } from "../archive/index.ts";
import { DockerIgnore } from "../image/dockerfile/dockerignore.ts";
import type { BuildEvent } from "../protocol/image-build.ts";
import { ndjson } from "./ndjson.ts";
import { queryString, type Transport } from "./transport.ts";

export interface BuildImageOptions {
  /** The image to build a new version of. */
  name: string;
  /** The build context as an uncompressed tar (see packBuildContext). */
  context: Readable;
  /** The Dockerfile's path inside the context (default "Dockerfile"). */
  dockerfile?: string;
  buildArgs?: Record<string, string>;
  noCache?: boolean;
  /** Aborting cancels the build: the daemon removes its builder VM and installs nothing. */
  signal?: AbortSignal;
}

/** A folder as a build context tar: what its .dockerignore names is left out (never the Dockerfile itself). */
export function packBuildContext(dir: string, dockerfile = "Dockerfile"): Readable {
  let text = "";
  try {
    text = readFileSync(`${dir}/.dockerignore`, "utf8");
  } catch {
    // No .dockerignore: everything goes.
  }
  const ignore = new DockerIgnore(text);
  const keep = new Set([dockerfile.replace(/^\.\//, ""), ".dockerignore"]);
  return packTree(dir, { skip: (path) => !keep.has(path) && ignore.ignores(path) });
}

/** Starts a build and yields its progress events; the last is `done` or `error`. */
export async function* buildImage(transport: Transport, options: BuildImageOptions): AsyncGenerator<BuildEvent> {
  const query = queryString({
    name: options.name,
    dockerfile: options.dockerfile,
    build_arg: Object.entries(options.buildArgs ?? {}).map(([k, v]) => `${k}=${v}`),
    no_cache: options.noCache || undefined,
  });
  const response = await transport.send("POST", `/images/build${query}`, { body: options.context, contentType: "application/x-tar", signal: options.signal, timeoutMs: 0 });
  yield* ndjson<BuildEvent>(response.body);
}
