// `corral image list|show|remove|prune|import|pull`: the image catalogue and the OCI sources. list and show
// read this host's store (no daemon needed) unless a daemon is named; the rest go through the daemon's API,
// so a remote CLI works too: `import` streams a `docker save` tarball, an OCI archive or an OCI layout folder
// (packed as a tar on the fly) to the daemon; `pull` has the daemon fetch from a registry. Both print
// progress on stderr.
import { createReadStream, statSync } from "node:fs";
import { basename } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import { packTree } from "../archive/index.ts";
import { corralHome } from "../image/home.ts";
import type { ImageDetail, ImageProgress, ImportedImage } from "../sdk/index.ts";
import { addConnectionOptions, clientFor, type ConnectionFlags } from "./connection.ts";
import { action, formatBytes, printJson, printTable } from "./output.ts";
import { resolveSecret, warnOnStderr } from "./secret-options.ts";

function when(iso: string): string {
  return iso.slice(0, 19).replace("T", " ");
}

function sourceOf(source: ImageDetail["versions"][number]["source"]): string {
  if (!source) return "-";
  const fields = source as Record<string, unknown>;
  const detail = fields.reference ?? fields.format ?? fields.recipe ?? fields.dockerfile;
  return typeof detail === "string" ? `${source.kind}:${detail}` : source.kind;
}

function progressPrinter(quiet: boolean): ((p: ImageProgress) => void) | undefined {
  if (quiet) return undefined;
  return (p) => process.stderr.write(`  ${p.stage === "step" ? "->" : "ok"} ${p.message}\n`);
}

/** The upload's own progress on stderr (at most once a second): the daemon reports only once it has it all. */
function withUploadProgress(source: Readable, total: number | undefined): Readable {
  let sent = 0;
  let last = 0;
  const of = total === undefined ? "" : ` of ${formatBytes(total)}`;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      sent += chunk.length;
      if (Date.now() - last >= 1000) {
        last = Date.now();
        process.stderr.write(`  .. sent ${formatBytes(sent)}${of}\n`);
      }
      callback(null, chunk);
    },
  });
  pipeline(source, counter).catch(() => undefined); // a failed read ends the upload; the daemon says why
  return counter;
}

function printImported(image: ImportedImage, json: boolean): void {
  if (json) return printJson(image);
  process.stdout.write(`${image.name} ${image.version} (${formatBytes(image.disk_size_bytes)} disk, ${formatBytes(image.disk_usage_bytes)} on host)\n`);
}

/** A default image name from a file name: "My-Tool_1.2.tar.gz" -> "my-tool_1.2". */
export function nameFromPath(path: string): string {
  const stem = basename(path.replace(/\/+$/, "")).replace(/\.(tar|tgz|tar\.gz|oci)$/i, "");
  return (
    stem
      .toLowerCase()
      .replace(/[^a-z0-9._-]/g, "-")
      .replace(/^[^a-z0-9]+/, "")
      .slice(0, 63) || "imported"
  );
}

/**
 * The catalogue to read: the named daemon's (--url or CORRAL_URL), else this host's store read directly (no
 * daemon needed: the store and its users are the same for every daemon of the host).
 */
async function catalogueFor(flags: ConnectionFlags): Promise<{ list(): Promise<ImageDetail[]>; show(name: string): Promise<ImageDetail> }> {
  if (flags.url !== undefined || process.env.CORRAL_URL !== undefined) return clientFor(flags).images;
  const { ImageCatalogue, ImageStore } = await import("../image/index.ts");
  return new ImageCatalogue(new ImageStore(corralHome().images));
}

export function registerImageCatalogueCommands(image: Command): void {
  addConnectionOptions(image.command("list").alias("ls").description("List images (this host's store; a daemon's with --url or CORRAL_URL)").option("--json", "print JSON")).action(
    action(async (flags: ConnectionFlags & { json?: boolean }) => {
      const images = await (await catalogueFor(flags)).list();
      if (flags.json) return printJson(images);
      if (images.length === 0) {
        process.stdout.write("No images. Build them with: corral image build base; corral image build debian\n");
        return;
      }
      printTable(
        ["NAME", "VERSION", "KERNEL", "DISK", "ON HOST", "BUILT", "VERSIONS", "IN USE", "SOURCE"],
        images.map((i) => {
          const current = i.versions.find((v) => v.current) ?? i.versions[0];
          const used = i.versions.reduce((n, v) => n + v.used_by.length, 0);
          return [
            i.name,
            i.version ?? "-",
            current?.kernel_release ?? "-",
            formatBytes(current?.disk_size_bytes ?? 0),
            formatBytes(i.versions.reduce((n, v) => n + v.disk_usage_bytes, 0)),
            current ? when(current.created_at) : "-",
            String(i.versions.length),
            String(used),
            sourceOf(current?.source ?? null),
          ];
        }),
      );
    }),
  );

  addConnectionOptions(
    image
      .command("show")
      .description("Show an image: every version with its sizes, source, config and users (this host's store; a daemon's with --url or CORRAL_URL)")
      .argument("<name>")
      .option("--json", "print JSON"),
  ).action(
    action(async (name: string, flags: ConnectionFlags & { json?: boolean }) => {
      const detail = await (await catalogueFor(flags)).show(name);
      if (flags.json) return printJson(detail);
      process.stdout.write(`Image ${detail.name}, current version ${detail.version ?? "(none)"}\n`);
      for (const v of detail.versions) {
        process.stdout.write(`\n${v.version}${v.current ? " (current)" : ""}  built ${when(v.created_at)}  kernel ${v.kernel_release}\n`);
        process.stdout.write(
          `  disk ${formatBytes(v.disk_size_bytes)}, ${formatBytes(v.disk_usage_bytes)} on host; source ${sourceOf(v.source)}${v.parent ? `; parent ${v.parent.name}@${v.parent.version}` : ""}\n`,
        );
        const c = v.config;
        if (c.default_user) process.stdout.write(`  default user ${c.default_user}\n`);
        if (c.user) process.stdout.write(`  user ${c.user}\n`);
        if (c.working_dir) process.stdout.write(`  working dir ${c.working_dir}\n`);
        if (c.env?.length) process.stdout.write(`  env ${c.env.join(" ")}\n`);
        if (c.entrypoint?.length) process.stdout.write(`  entrypoint ${JSON.stringify(c.entrypoint)}\n`);
        if (c.cmd?.length) process.stdout.write(`  cmd ${JSON.stringify(c.cmd)}\n`);
        const users = v.used_by.map((u) => `${u.kind} ${u.id}${u.in_making ? " (being made)" : ""}`);
        process.stdout.write(`  used by ${users.length ? users.join(", ") : "nothing"}\n`);
      }
    }),
  );

  addConnectionOptions(
    image.command("remove").alias("rm").description("Remove an image and all its versions (refused while a VM, template or commit uses it)").argument("<name>"),
  ).action(
    action(async (name: string, flags: ConnectionFlags) => {
      const removed = await clientFor(flags).images.remove(name);
      process.stdout.write(`Removed image ${removed.name} (${removed.versions.length} version${removed.versions.length === 1 ? "" : "s"})\n`);
    }),
  );

  addConnectionOptions(
    image.command("prune").description("Remove every image version that no VM, template or commit uses (current versions stay)").option("--json", "print JSON"),
  ).action(
    action(async (flags: ConnectionFlags & { json?: boolean }) => {
      const result = await clientFor(flags).images.prune();
      if (flags.json) return printJson(result);
      for (const r of result.removed) process.stdout.write(`Removed ${r.name}@${r.version} (${formatBytes(r.disk_usage_bytes)})\n`);
      process.stdout.write(`Reclaimed ${formatBytes(result.reclaimed_bytes)} (${result.removed.length} version${result.removed.length === 1 ? "" : "s"})\n`);
    }),
  );

  addConnectionOptions(
    image
      .command("import")
      .description("Import a `docker save` tarball, an OCI archive or an OCI image layout folder as an image")
      .argument("<path>", "a tar file or an OCI layout folder")
      .option("--name <name>", "the image's name (default: from the file name)")
      .option("--quiet", "no progress on stderr")
      .option("--json", "print JSON"),
  ).action(
    action(async (path: string, flags: ConnectionFlags & { name?: string; quiet?: boolean; json?: boolean }) => {
      const isDir = statSync(path).isDirectory();
      // A layout folder goes as the OCI archive it would be: a tar of its contents.
      const source: Readable = isDir ? packTree(path, { topName: "" }) : createReadStream(path);
      const body = flags.quiet ? source : withUploadProgress(source, isDir ? undefined : statSync(path).size);
      const imported = await clientFor(flags).images.import(flags.name ?? nameFromPath(path), body, { onProgress: progressPrinter(flags.quiet ?? false) });
      printImported(imported, flags.json ?? false);
    }),
  );

  addConnectionOptions(
    image
      .command("pull")
      .description("Pull an image from a registry (HTTP Basic or token auth)")
      .argument("<reference>", 'e.g. "127.0.0.1:5000/team/tool:1.0"')
      .option("--name <name>", "the image's name (default: the repository's last component)")
      .option("--username <user>", "registry user")
      .option("--password <password>", "registry password (ps shows it: prefer --password-file or env CORRAL_REGISTRY_PASSWORD)")
      .option("--password-file <file>", "read the registry password from FILE (mode 0600)")
      .option("--insecure", "allow plain HTTP and unverified TLS (Slicer's registry `insecure`)")
      .option("--quiet", "no progress on stderr")
      .option("--json", "print JSON"),
  ).action(
    action(
      async (
        reference: string,
        flags: ConnectionFlags & { name?: string; username?: string; password?: string; passwordFile?: string; insecure?: boolean; quiet?: boolean; json?: boolean },
      ) => {
        const password = resolveSecret(
          {
            value: flags.password,
            file: flags.passwordFile,
            env: process.env.CORRAL_REGISTRY_PASSWORD,
            flag: "--password",
            fileFlag: "--password-file",
            envName: "CORRAL_REGISTRY_PASSWORD",
          },
          warnOnStderr,
        );
        if ((flags.username === undefined) !== (password === undefined)) throw new Error("Give --username with --password-file (or CORRAL_REGISTRY_PASSWORD), or neither");
        const imported = await clientFor(flags).images.pull(
          { reference, name: flags.name, username: flags.username, password, insecure: flags.insecure },
          { onProgress: progressPrinter(flags.quiet ?? false) },
        );
        printImported(imported, flags.json ?? false);
      },
    ),
  );
}
