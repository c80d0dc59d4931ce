// SSH from tests into guests: a throwaway ed25519 key pair, and `ssh` with that key to a forwarded port on
// 127.0.0.1 (no host-key prompts, no agent, a generous connect timeout for TCG guests).
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface SshKey {
  privateKeyFile: string;
  publicKey: string;
  dispose(): Promise<void>;
}

export async function makeSshKey(comment = "corral-test"): Promise<SshKey> {
  const dir = await mkdtemp(join(tmpdir(), "corral-ssh-"));
  const privateKeyFile = join(dir, "id");
  await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", privateKeyFile]);
  return { privateKeyFile, publicKey: readFileSync(`${privateKeyFile}.pub`, "utf8").trim(), dispose: () => rm(dir, { recursive: true, force: true }) };
}

/** Runs `command` as root over SSH on 127.0.0.1:`port`; its stdout. */
export async function sshAsRoot(key: SshKey, port: number, command: string): Promise<string> {
  const options = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null", "BatchMode=yes", "ConnectTimeout=60", "LogLevel=ERROR"].flatMap((o) => ["-o", o]);
  return (await run("ssh", ["-i", key.privateKeyFile, "-p", String(port), ...options, "root@127.0.0.1", command], { timeout: 120_000 })).stdout;
}
