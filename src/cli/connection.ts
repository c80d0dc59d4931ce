// Which daemon the CLI talks to: --url / CORRAL_URL, else the daemon recorded in the default state
// directory (daemon.json, with its token file), else http://127.0.0.1:8080.
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { readRuntimeInfo } from "../daemon/runtime-info.ts";
import { corralHome } from "../image/home.ts";
import { CorralClient } from "../sdk/daemon-client.ts";
import { resolveSecret, warnOnStderr } from "./secret-options.ts";

export interface ConnectionFlags {
  url?: string;
  token?: string;
  tokenFile?: string;
  stateDir?: string;
}

export function addConnectionOptions(command: Command): Command {
  return command
    .option("--url <url>", "daemon URL or unix socket path (env CORRAL_URL)")
    .option("--token <token>", "API token (ps shows it: prefer --token-file or env CORRAL_TOKEN)")
    .option("--token-file <file>", "read the API token from FILE (mode 0600), e.g. the daemon's STATE_DIR/auth/token")
    .option("--state-dir <dir>", "find the daemon through this state directory's daemon.json");
}

export function resolveConnection(flags: ConnectionFlags): { url: string; token: string | undefined } {
  const info = readRuntimeInfo(flags.stateDir ?? corralHome().defaultStateDir);
  const url = flags.url ?? process.env.CORRAL_URL ?? info?.socket ?? info?.url ?? "http://127.0.0.1:8080";
  let token = resolveSecret(
    { value: flags.token, file: flags.tokenFile, env: process.env.CORRAL_TOKEN, flag: "--token", fileFlag: "--token-file", envName: "CORRAL_TOKEN" },
    warnOnStderr,
  );
  if (token === undefined && info?.token_file) {
    try {
      token = readFileSync(info.token_file, "utf8").trim();
    } catch {
      // not readable by this user: the daemon will answer 401 and say so
    }
  }
  return { url, token };
}

export function clientFor(flags: ConnectionFlags): CorralClient {
  const { url, token } = resolveConnection(flags);
  return new CorralClient({ url, token });
}
