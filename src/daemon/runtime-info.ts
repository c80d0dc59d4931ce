// STATE_DIR/daemon.json: written by a running daemon so the CLI can find it (URL, socket, token file).
import { readFileSync } from "node:fs";
import { join } from "node:path";

export interface DaemonRuntimeInfo {
  pid: number;
  url: string;
  socket?: string;
  auth: boolean;
  token_file?: string;
  started_at: string;
}

export function runtimeInfoFile(stateDir: string): string {
  return join(stateDir, "daemon.json");
}

export function readRuntimeInfo(stateDir: string): DaemonRuntimeInfo | undefined {
  try {
    return JSON.parse(readFileSync(runtimeInfoFile(stateDir), "utf8")) as DaemonRuntimeInfo;
  } catch {
    return undefined;
  }
}
