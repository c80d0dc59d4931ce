// The two ways an OCI image comes in, as the daemon's routes call them: an archive streamed in (a `docker
// save` tarball or an OCI archive; the CLI packs an OCI layout folder as the latter) and a pull from a
// registry. The archive is written to the import's work folder as it arrives (never held in memory), its
// format read from its entries, and both end in importOci().
import { createReadStream, createWriteStream } from "node:fs";
import { once } from "node:events";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { extract as tarExtract } from "tar-stream";
import { CorralError } from "../../protocol/errors.ts";
import { assertImageName } from "../../protocol/names.ts";
import { pump } from "../../util/pump.ts";
import { storageFullError } from "../../util/storage-full.ts";
import type { CorralHome } from "../home.ts";
import type { ImageStore, ImageVersion } from "../image-store.ts";
import type { Progress } from "../progress.ts";
import { importOci, importWorkDir, type GuestRuntime } from "./import-image.ts";
import { parseReference } from "./reference.ts";
import { archiveSource, registrySource, type ArchiveFormat, type RegistryAuth } from "./skopeo.ts";

export interface PullRequest {
  reference: string;
  /** The image's name; default: the repository's last component. */
  name?: string;
  auth?: RegistryAuth;
  /** Plain HTTP and unverified TLS; unset: the daemon's `insecure_registry`. */
  insecure?: boolean;
}

/** Which archive a tar is, from its top-level entries; `invalid_image_archive` for neither, or a broken tar. */
export async function archiveFormat(path: string): Promise<ArchiveFormat> {
  const names = new Set<string>();
  const extract = tarExtract();
  try {
    const reading = pipeline(createReadStream(path), extract);
    for await (const entry of extract) {
      names.add(entry.header.name.replace(/^\.\//, ""));
      entry.resume();
    }
    await reading;
  } catch (err) {
    throw new CorralError("invalid_image_archive", `The archive is not a valid tar (truncated or corrupt?): ${(err as Error).message}`, { cause: err });
  }
  if (names.size === 0) throw new CorralError("invalid_image_archive", "The archive is empty: send a `docker save` tarball or an OCI image archive");
  // Docker 25+ writes both: its manifest.json is what `docker load` reads.
  if (names.has("manifest.json")) return "docker-archive";
  if (names.has("oci-layout") && names.has("index.json")) return "oci-archive";
  throw new CorralError("invalid_image_archive", "The archive is neither a `docker save` tarball (no manifest.json) nor an OCI image archive (no oci-layout and index.json)");
}

/** A name for a pulled image from its repository: "tools/Alpine_x" -> "alpine_x". */
export function defaultImageName(repository: string): string {
  const last = repository.split("/").pop() ?? "";
  const name = last
    .toLowerCase()
    .replace(/[^a-z0-9._-]/g, "-")
    .replace(/^[^a-z0-9]+/, "")
    .slice(0, 63);
  return name || "imported";
}

export class OciImports {
  constructor(private readonly deps: { home: CorralHome; store: ImageStore; runtime: GuestRuntime; insecureRegistry: boolean }) {}

  async importArchive(name: string, body: Readable, progress: Progress, signal?: AbortSignal): Promise<ImageVersion> {
    assertImageName(name);
    const work = await importWorkDir(this.deps.home);
    const archive = join(work, "upload.tar");
    try {
      progress.step("receiving the archive");
      // pump, not pipeline: a failed write must leave the request body whole, so the answer can still go out.
      const file = createWriteStream(archive, { mode: 0o600 });
      const closed = once(file, "close");
      await pump(body, file);
      await closed;
      signal?.throwIfAborted();
      progress.done("archive received");
      const format = await archiveFormat(archive);
      return await importOci({ name, source: archiveSource(format, archive), record: { kind: "oci", format }, work }, { ...this.deps, progress, signal });
    } catch (err) {
      await rm(work, { recursive: true, force: true });
      throw storageFullError(err, `the archive of image "${name}"`, this.deps.home.cache) ?? err;
    }
  }

  async pull(request: PullRequest, progress: Progress, signal?: AbortSignal): Promise<ImageVersion> {
    const reference = parseReference(request.reference);
    const name = assertImageName(request.name ?? defaultImageName(reference.repository));
    const work = await importWorkDir(this.deps.home);
    const source = registrySource(reference, { auth: request.auth, insecure: request.insecure ?? this.deps.insecureRegistry });
    return importOci({ name, source, record: { kind: "oci", reference: reference.canonical }, work }, { ...this.deps, progress, signal });
  }
}
