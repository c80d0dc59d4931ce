// `corral vm cp SRC DST` (one side `HOST:/path`, files or directories, like cp -r) and `corral vm files HOST PATH`
// (a directory listing; `vm ls` already lists VMs).
// Directories travel as tar streams packed and unpacked on this side; nothing is held whole in memory.
import { createReadStream, createWriteStream, existsSync, statSync } from "node:fs";
import { chmod, mkdir } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import { extractTree, packTree } from "../archive/index.ts";
import { HOSTNAME_PATTERN } from "../protocol/names.ts";
import { parseOctalMode } from "../protocol/files.ts";
import type { CorralClient, FsInfo } from "../sdk/index.ts";
import { addConnectionOptions, clientFor, type ConnectionFlags } from "./connection.ts";
import { action, collect, formatBytes, printJson, printTable } from "./output.ts";

export interface CopyEnd {
  host?: string;
  path: string;
}

const REMOTE = new RegExp(`^(${HOSTNAME_PATTERN.slice(1, -1)}):(.*)$`);

/** `sbox-1:/etc/hosts` is in a VM; anything else (`./a:b`, `/tmp/x`, `-`) is here. */
export function parseCopyEnd(text: string): CopyEnd {
  const match = REMOTE.exec(text);
  if (match && !text.startsWith("./") && !text.startsWith("/")) return { host: match[1] as string, path: (match[match.length - 1] as string) || "~" };
  return { path: text };
}

/** cp's rule: a source ending in "/." copies the directory's contents, not the directory. */
function copiesContents(path: string): boolean {
  return /\/\.\/*$/.test(path) || path === ".";
}

interface CopyFlags extends ConnectionFlags {
  uid?: string;
  gid?: string;
  mode?: string;
  exclude?: string[];
  json?: boolean;
}

interface CopyReport {
  direction: "to-vm" | "from-vm";
  source: string;
  destination: string;
  type: "file" | "directory";
  bytes: number;
  files: number;
  seconds: number;
}

function ownership(flags: CopyFlags): { uid?: number; gid?: number; permissions?: number } {
  const number = (text: string | undefined, flag: string): number | undefined => {
    if (text === undefined) return undefined;
    if (!/^\d+$/.test(text)) throw new Error(`Invalid ${flag} ${JSON.stringify(text)}: use a number`);
    return Number(text);
  };
  const permissions = flags.mode === undefined ? undefined : parseOctalMode(flags.mode);
  if (flags.mode !== undefined && permissions === undefined) throw new Error(`Invalid --mode ${JSON.stringify(flags.mode)}: use an octal mode such as 0644`);
  return { uid: number(flags.uid, "--uid"), gid: number(flags.gid, "--gid"), permissions };
}

async function copyToVm(client: CorralClient, local: string, remote: Required<CopyEnd>, flags: CopyFlags): Promise<Omit<CopyReport, "seconds">> {
  const owner = ownership(flags);
  if (local === "-") {
    const result = await client.fs.upload(remote.host, remote.path, process.stdin, { ...owner, mode: "binary" });
    return { direction: "to-vm", source: "-", destination: `${remote.host}:${result.path}`, type: "file", bytes: result.bytes, files: 1 };
  }
  const source = resolve(local);
  const stats = statSync(source);
  if (stats.isDirectory()) {
    const result = await client.fs.upload(remote.host, remote.path, packTree(source, { exclude: flags.exclude }), {
      ...owner,
      mode: "cp-v1-tar",
      sourceName: basename(source),
      copyContents: copiesContents(local),
      exclude: flags.exclude,
    });
    return { direction: "to-vm", source: local, destination: `${remote.host}:${result.path}`, type: "directory", bytes: result.bytes, files: result.files };
  }
  if (!stats.isFile()) throw new Error(`Cannot copy ${JSON.stringify(local)}: it is neither a file nor a directory`);
  const result = await client.fs.upload(remote.host, remote.path, createReadStream(source), {
    ...owner,
    permissions: owner.permissions ?? stats.mode & 0o777,
    mode: "cp-v1-binary",
    sourceName: basename(source),
  });
  return { direction: "to-vm", source: local, destination: `${remote.host}:${result.path}`, type: "file", bytes: result.bytes, files: 1 };
}

async function copyFromVm(client: CorralClient, remote: Required<CopyEnd>, local: string, flags: CopyFlags): Promise<Omit<CopyReport, "seconds">> {
  const download = await client.fs.download(remote.host, remote.path, { mode: "cp-v1-recursive", exclude: flags.exclude });
  const owner = ownership(flags);
  const name = download.sourceName ?? basename(remote.path);
  const existing = existsSync(local) ? statSync(local) : undefined;
  if (download.sourceType === "directory") {
    let destination = resolve(local);
    if (existing && !existing.isDirectory()) throw new Error(`Cannot copy a directory onto ${JSON.stringify(local)}: it is a file`);
    if (existing && !copiesContents(remote.path) && name !== "") destination = join(destination, name);
    await mkdir(destination, { recursive: true });
    const result = await extractTree(download.body, destination, { fileMode: owner.permissions, exclude: flags.exclude });
    return { direction: "from-vm", source: `${remote.host}:${remote.path}`, destination, type: "directory", ...result };
  }
  if (local === "-") {
    await pipeline(download.body, process.stdout);
    return { direction: "from-vm", source: `${remote.host}:${remote.path}`, destination: "-", type: "file", bytes: download.size ?? 0, files: 1 };
  }
  const destination = existing?.isDirectory() ? join(local, name) : local;
  const mode = owner.permissions ?? download.fileMode ?? 0o644;
  const file = createWriteStream(destination, { mode });
  await pipeline(download.body, file);
  await chmod(destination, mode);
  return { direction: "from-vm", source: `${remote.host}:${remote.path}`, destination, type: "file", bytes: file.bytesWritten, files: 1 };
}

function listRow(entry: FsInfo): string[] {
  const type = entry.type === "directory" ? "d" : entry.type === "symlink" ? "l" : "-";
  return [`${type}${entry.mode}`, entry.type === "directory" ? "-" : formatBytes(entry.size), entry.mtime.replace("T", " ").replace(/\.\d+Z$/, "Z"), entry.name];
}

/** Adds `cp` and `files` to the `vm` command group registered by vm-commands.ts. */
export function registerCopyCommands(program: Command): void {
  const vm = program.commands.find((command) => command.name() === "vm");
  if (!vm) throw new Error("registerCopyCommands needs the vm command group: register it first");

  addConnectionOptions(
    vm
      .command("cp")
      .description("Copy a file or directory into or out of a VM: one side is HOST:/path (e.g. corral vm cp ./src sbox-1:/work)")
      .argument("<source>", "a local path (- for stdin), or HOST:/path")
      .argument("<destination>", "HOST:/path, or a local path (- for stdout)"),
  )
    .option("--uid <uid>", "owner of the copied files in the VM")
    .option("--gid <gid>", "group of the copied files in the VM")
    .option("--mode <octal>", "permissions of the copied files, e.g. 0644 (default: the source's)")
    .option("--exclude <glob>", "leave out matching paths of a directory (repeatable; ** allowed)", collect)
    .option("--json", "print what was copied as JSON")
    .action(
      action(async (sourceText: string, destinationText: string, flags: CopyFlags) => {
        const source = parseCopyEnd(sourceText);
        const destination = parseCopyEnd(destinationText);
        if ((source.host === undefined) === (destination.host === undefined)) {
          throw new Error("Name a VM on exactly one side, e.g. corral vm cp ./file sbox-1:/tmp/ or corral vm cp sbox-1:/etc/hosts .");
        }
        const client = clientFor(flags);
        try {
          const started = performance.now();
          const report = destination.host
            ? await copyToVm(client, source.path, { host: destination.host, path: destination.path }, flags)
            : await copyFromVm(client, { host: source.host as string, path: source.path }, destination.path, flags);
          const seconds = (performance.now() - started) / 1000;
          if (flags.json) return printJson({ ...report, seconds: Math.round(seconds * 1000) / 1000 });
          if (report.destination !== "-") {
            const what = report.type === "directory" ? `${report.files} files, ${formatBytes(report.bytes)}` : formatBytes(report.bytes);
            process.stderr.write(`Copied ${report.source} to ${report.destination} (${what} in ${seconds.toFixed(1)}s)\n`);
          }
        } finally {
          await client.close();
        }
      }),
    );

  addConnectionOptions(vm.command("files").description("List a directory in a VM").argument("<hostname>").argument("[path]", "a path in the VM", "/"))
    .option("--json", "print JSON")
    .action(
      action(async (hostname: string, path: string, flags: ConnectionFlags & { json?: boolean }) => {
        const client = clientFor(flags);
        try {
          const info = await client.fs.stat(hostname, path);
          if (!info) throw new Error(`Cannot list ${JSON.stringify(path)} in ${hostname}: it does not exist`);
          const entries = info.type === "directory" ? await client.fs.readdir(hostname, path) : [info];
          if (flags.json) return printJson(entries);
          printTable(["MODE", "SIZE", "MODIFIED", "NAME"], entries.map(listRow));
        } finally {
          await client.close();
        }
      }),
    );
}
