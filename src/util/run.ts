// Running host programs (qemu-img, mkfs.ext4, apt-get, dpkg-deb) with their failures explained.
import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { join } from "node:path";

export class CommandError extends Error {
  readonly command: string;
  readonly exitCode: number | null;
  readonly stderr: string;

  constructor(command: string, exitCode: number | null, stderr: string, cause?: unknown) {
    const detail = stderr.trim().split("\n").slice(-5).join("\n");
    super(`Command failed (${exitCode === null ? "did not start" : `exit ${exitCode}`}): ${command}${detail ? `\n${detail}` : ""}`, { cause });
    this.name = "CommandError";
    this.command = command;
    this.exitCode = exitCode;
    this.stderr = stderr;
  }
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Bytes of stdout to keep; the rest is discarded (stderr keeps its last 64 KiB). */
  maxStdout?: number;
  signal?: AbortSignal;
  /** Written to the program's stdin (otherwise it reads end-of-file). */
  input?: string;
}

/** Runs a program to completion and returns its stdout; throws CommandError with stderr's tail on failure. */
export function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  const command = [file, ...args].join(" ");
  const maxStdout = options.maxStdout ?? 16 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["pipe", "pipe", "pipe"],
      signal: options.signal,
    });
    // Without input the program reads end-of-file at once. One that exits without reading all its input
    // makes the write fail with EPIPE: its exit status says why.
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input);
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8");
    child.stderr.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      if (stdout.length < maxStdout) stdout += chunk.slice(0, maxStdout - stdout.length);
    });
    child.stderr.on("data", (chunk: string) => {
      stderr = (stderr + chunk).slice(-65536);
    });
    child.on("error", (err) => reject(new CommandError(command, null, String(err), err)));
    child.on("close", (code) => {
      if (code === 0) resolve(stdout);
      else reject(new CommandError(command, code, stderr));
    });
  });
}

/** Full path of a program on PATH (plus the sbin folders a non-root PATH lacks), or undefined. */
export function findProgram(file: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dirs = [...(env.PATH ?? "").split(":"), "/usr/local/sbin", "/usr/sbin", "/sbin"];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, file);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; keep looking
    }
  }
  return undefined;
}

/** Like findProgram, but throws an error that says which package provides the missing program. */
export function requireProgram(file: string, debianPackage: string): string {
  const found = findProgram(file);
  if (!found) throw new Error(`Cannot find "${file}": install the Debian package "${debianPackage}" (./corral up installs it)`);
  return found;
}
