// Runs ./corral from the repository as a user would, and collects its exit code and output.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

export const CORRAL = fileURLToPath(new URL("../../corral", import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function corral(args: string[], env: NodeJS.ProcessEnv = {}, input?: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(CORRAL, args, { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input ?? "");
  });
}
