// OCI images written by the tests' own code (no Docker, no umoci): a tiny static root filesystem (Debian's
// busybox-static) in two layers, the second with a whiteout and an opaque directory, and a config with Env,
// WorkingDir, User and Cmd. Written as an OCI image layout (folder), an OCI archive (tar of the layout) and a
// `docker save` tarball (manifest.json, the config, one tar per layer).
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { pack as tarPack, type Header } from "tar-stream";

export type LayerEntry = Partial<Header> & { name: string; body?: Buffer | string };

export async function tarOf(entries: readonly LayerEntry[]): Promise<Buffer> {
  const pack = tarPack();
  for (const { body, ...header } of entries) {
    const type = header.type ?? "file";
    const full = { mode: type === "directory" ? 0o755 : 0o644, mtime: new Date(1_700_000_000_000), uid: 0, gid: 0, ...header, type };
    if (type === "file") pack.entry(full, body ?? "");
    else pack.entry(full);
  }
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of pack) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const sha256 = (data: Buffer | string): string => createHash("sha256").update(data).digest("hex");

export interface FixtureImage {
  /** Layer tars, uncompressed (the docker archive's form); the OCI forms gzip the second one. */
  layers: Buffer[];
  config: Record<string, unknown>;
}

/** The image the tests import: busybox, a whiteout of /etc/gone.txt, /data made opaque, Env/WorkingDir/User/Cmd. */
export async function testImage(options: { busybox?: string; extraEntries?: LayerEntry[] } = {}): Promise<FixtureImage> {
  const busybox = readFileSync(options.busybox ?? "/bin/busybox");
  const applets = ["sh", "ls", "cat", "env", "pwd", "id", "echo", "test", "mkdir", "sleep", "true", "false", "grep", "ip", "mount", "hostname"];
  const layer1 = await tarOf([
    { name: "bin/", type: "directory" },
    { name: "bin/busybox", body: busybox, mode: 0o755 },
    ...applets.map((a): LayerEntry => ({ name: `bin/${a}`, type: "symlink", linkname: "busybox" })),
    { name: "etc/", type: "directory" },
    { name: "etc/passwd", body: "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n" },
    { name: "etc/group", body: "root:x:0:\napp:x:1000:\n" },
    { name: "etc/gone.txt", body: "deleted by the next layer\n" },
    { name: "data/", type: "directory" },
    { name: "data/old.txt", body: "hidden by the opaque marker\n" },
    { name: "data/sub/", type: "directory" },
    { name: "data/sub/deep.txt", body: "also hidden\n" },
    { name: "home/app/", type: "directory", uid: 1000, gid: 1000 },
  ]);
  const layer2 = await tarOf([
    { name: "etc/.wh.gone.txt" },
    { name: "data/new.txt", body: "from layer 2\n" },
    { name: "data/.wh..wh..opq" },
    { name: "srv/app/", type: "directory" },
    { name: "srv/app/hello.txt", body: "hello from the image\n" },
    ...(options.extraEntries ?? []),
  ]);
  const config = {
    architecture: "amd64",
    os: "linux",
    config: {
      Env: ["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello-oci"],
      WorkingDir: "/srv/app",
      User: "1000:1000",
      Cmd: ["sh", "-c", "echo started"],
      Labels: { "org.example.purpose": "corral-test" },
    },
    rootfs: { type: "layers", diff_ids: [`sha256:${sha256(layer1)}`, `sha256:${sha256(layer2)}`] },
    history: [{ created_by: "test layer 1" }, { created_by: "test layer 2" }],
  };
  return { layers: [layer1, layer2], config };
}

/** Writes `image` as an OCI image layout in `dir`; returns the manifest's digest. */
export async function writeOciLayout(image: FixtureImage, dir: string, options: { tag?: string } = {}): Promise<string> {
  const blobs = join(dir, "blobs", "sha256");
  await mkdir(blobs, { recursive: true });
  const put = async (data: Buffer): Promise<{ digest: string; size: number }> => {
    const hex = sha256(data);
    await writeFile(join(blobs, hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  const layers = [];
  for (const [index, layer] of image.layers.entries()) {
    // The second layer gzip'd, the first plain: both forms a registry or archive may hold.
    const gzipped = index === 1;
    const blob = await put(gzipped ? gzipSync(layer) : layer);
    layers.push({ mediaType: gzipped ? "application/vnd.oci.image.layer.v1.tar+gzip" : "application/vnd.oci.image.layer.v1.tar", ...blob });
  }
  const config = await put(Buffer.from(JSON.stringify(image.config)));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
      layers,
    }),
  );
  const manifestBlob = await put(manifest);
  const index = {
    schemaVersion: 2,
    manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...manifestBlob, annotations: { "org.opencontainers.image.ref.name": options.tag ?? "latest" } }],
  };
  await writeFile(join(dir, "index.json"), JSON.stringify(index));
  await writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  return manifestBlob.digest;
}

/** A tar of every file below `dir` (an OCI archive when `dir` is a layout). */
export async function tarDirectory(dir: string): Promise<Buffer> {
  const { readdir, readFile, stat } = await import("node:fs/promises");
  const entries: LayerEntry[] = [];
  const walk = async (relative: string): Promise<void> => {
    for (const name of (await readdir(join(dir, relative))).sort()) {
      const path = relative ? `${relative}/${name}` : name;
      if ((await stat(join(dir, path))).isDirectory()) {
        entries.push({ name: `${path}/`, type: "directory" });
        await walk(path);
      } else {
        entries.push({ name: path, body: await readFile(join(dir, path)) });
      }
    }
  };
  await walk("");
  return tarOf(entries);
}

/** `image` as `docker save` writes it: manifest.json, the config as HEX.json, each layer as HEX/layer.tar. */
export async function dockerArchive(image: FixtureImage, repoTag = "corral-test/tiny:1"): Promise<Buffer> {
  const configData = Buffer.from(JSON.stringify(image.config));
  const configName = `${sha256(configData)}.json`;
  const entries: LayerEntry[] = [{ name: configName, body: configData }];
  const layerNames: string[] = [];
  for (const layer of image.layers) {
    const id = sha256(layer);
    entries.push({ name: `${id}/`, type: "directory" }, { name: `${id}/layer.tar`, body: layer }, { name: `${id}/VERSION`, body: "1.0" });
    layerNames.push(`${id}/layer.tar`);
  }
  entries.push({ name: "manifest.json", body: JSON.stringify([{ Config: configName, RepoTags: [repoTag], Layers: layerNames }]) });
  return tarOf(entries);
}
