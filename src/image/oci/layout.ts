// Reads an OCI image layout (index.json, blobs/sha256/…) that skopeo wrote: the linux/amd64 manifest, its
// config and its layers, each blob checked against its digest (small JSON blobs when read, layers while they
// stream into the root filesystem). A layout is input like any other: a missing blob or a digest that does
// not match is an `invalid_image_archive`, never a half-built image.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { Transform, type Readable } from "node:stream";
import { CorralError } from "../../protocol/errors.ts";

const INDEX_TYPES = new Set(["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"]);
const MAX_JSON_BLOB = 4 * 1024 * 1024;
const DIGEST = /^sha256:([0-9a-f]{64})$/;

export interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: { architecture?: string; os?: string };
}

/** The part of OCI's image config Corral keeps (image-spec config.md). */
export interface OciImageConfig {
  architecture?: string;
  os?: string;
  config?: {
    Env?: string[] | null;
    WorkingDir?: string;
    User?: string;
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Labels?: Record<string, string> | null;
  };
}

export interface OciImage {
  manifestDigest: string;
  config: OciImageConfig;
  layers: Descriptor[];
  /** Sum of the layers' (compressed) sizes. */
  layerBytes: number;
}

function invalid(message: string, cause?: unknown): CorralError {
  return new CorralError("invalid_image_archive", message, cause === undefined ? {} : { cause });
}

function blobPath(layout: string, digest: string): string {
  const match = DIGEST.exec(digest);
  if (!match) throw invalid(`The image names a blob by an unsupported digest ${JSON.stringify(digest)} (only sha256 is read)`);
  return join(layout, "blobs", "sha256", match[1] as string);
}

async function readJsonBlob<T>(layout: string, descriptor: Descriptor, what: string): Promise<T> {
  const path = blobPath(layout, descriptor.digest);
  let data: Buffer;
  try {
    const info = await stat(path);
    if (info.size > MAX_JSON_BLOB) throw invalid(`The image's ${what} is ${info.size} bytes: too large to be one`);
    data = await readFile(path);
  } catch (err) {
    if (err instanceof CorralError) throw err;
    throw invalid(`The image's ${what} blob ${descriptor.digest} is missing`, err);
  }
  const actual = `sha256:${createHash("sha256").update(data).digest("hex")}`;
  if (actual !== descriptor.digest) throw invalid(`The image's ${what} does not match its digest: expected ${descriptor.digest}, got ${actual}`);
  try {
    return JSON.parse(data.toString("utf8")) as T;
  } catch (err) {
    throw invalid(`The image's ${what} is not JSON`, err);
  }
}

function isDescriptor(value: unknown): value is Descriptor {
  const d = value as Descriptor;
  return typeof d === "object" && d !== null && typeof d.digest === "string" && typeof d.size === "number";
}

/** Picks the image for this host from an index: linux/amd64, or the only entry. */
function pickManifest(entries: unknown, where: string): Descriptor {
  if (!Array.isArray(entries) || entries.length === 0 || !entries.every(isDescriptor)) throw invalid(`The image's ${where} lists no manifests`);
  if (entries.length === 1) return entries[0] as Descriptor;
  const amd64 = entries.find((d) => d.platform?.os === "linux" && d.platform.architecture === "amd64");
  if (!amd64) throw invalid(`The image's ${where} has no linux/amd64 image (this host runs amd64 guests)`);
  return amd64;
}

export async function readLayout(layout: string): Promise<OciImage> {
  let index: { manifests?: unknown };
  try {
    index = JSON.parse(await readFile(join(layout, "index.json"), "utf8")) as { manifests?: unknown };
  } catch (err) {
    throw invalid("The OCI layout has no readable index.json", err);
  }
  let descriptor = pickManifest(index.manifests, "index");
  // An index may point at another index (a multi-platform image): follow it, a few levels at most.
  for (let depth = 0; depth < 4 && INDEX_TYPES.has(descriptor.mediaType ?? ""); depth++) {
    const nested = await readJsonBlob<{ manifests?: unknown }>(layout, descriptor, "image index");
    descriptor = pickManifest(nested.manifests, "image index");
  }
  const manifest = await readJsonBlob<{ config?: unknown; layers?: unknown }>(layout, descriptor, "manifest");
  if (!isDescriptor(manifest.config)) throw invalid("The image's manifest names no config");
  if (!Array.isArray(manifest.layers) || !manifest.layers.every(isDescriptor)) throw invalid("The image's manifest has no valid list of layers");
  const config = await readJsonBlob<OciImageConfig>(layout, manifest.config, "config");
  if (config.architecture && config.architecture !== "amd64") throw invalid(`The image is for ${JSON.stringify(config.architecture)}: this host runs amd64 guests`);
  if (config.os && config.os !== "linux") throw invalid(`The image is for ${JSON.stringify(config.os)}, not linux`);
  const layers = manifest.layers as Descriptor[];
  for (const layer of layers) blobPath(layout, layer.digest);
  return { manifestDigest: descriptor.digest, config, layers, layerBytes: layers.reduce((sum, l) => sum + l.size, 0) };
}

/**
 * A layer's bytes as a stream that fails at its end when the bytes do not match the digest (or the size):
 * the caller has written into a staging folder it throws away on failure.
 */
export function openLayer(layout: string, layer: Descriptor, index: number): Readable {
  const path = blobPath(layout, layer.digest);
  const hash = createHash("sha256");
  let size = 0;
  const check = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
    flush(callback) {
      const actual = `sha256:${hash.digest("hex")}`;
      if (actual !== layer.digest) return callback(invalid(`Layer ${index + 1} does not match its digest: expected ${layer.digest}, got ${actual}`));
      if (size !== layer.size) return callback(invalid(`Layer ${index + 1} is ${size} bytes, its manifest says ${layer.size}`));
      callback();
    },
  });
  const file = createReadStream(path);
  file.on("error", (err) => check.destroy(invalid(`Layer ${index + 1} (${layer.digest}) is missing from the image`, err)));
  return file.pipe(check);
}
