// STATE_DIR/controller.json: written by a running controller so the CLI can find it (URL, API key file).
import { readFileSync } from "node:fs";
import { rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface ControllerRuntimeInfo {
  url: string;
  /** Where the controller's `--api-key` is kept, when it runs with one (the CLI reads the key from it). */
  api_key_file?: string;
  pid?: number;
  started_at?: string;
}

export function controllerInfoFile(stateDir: string): string {
  return join(stateDir, "controller.json");
}

/** Written aside and renamed into place: a reader that sees the file must never see it half-written. */
export async function writeControllerInfo(stateDir: string, info: ControllerRuntimeInfo): Promise<void> {
  const file = controllerInfoFile(stateDir);
  await writeFile(`${file}.tmp`, `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}

export function readControllerInfo(stateDir: string): ControllerRuntimeInfo | undefined {
  try {
    const info = JSON.parse(readFileSync(controllerInfoFile(stateDir), "utf8")) as Partial<ControllerRuntimeInfo>;
    return typeof info.url === "string" ? (info as ControllerRuntimeInfo) : undefined;
  } catch {
    return undefined;
  }
}

export async function removeControllerInfo(stateDir: string): Promise<void> {
  await rm(controllerInfoFile(stateDir), { force: true });
}
