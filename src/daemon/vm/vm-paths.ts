// Where one VM's files live on the host: STATE_DIR/vms/HOSTNAME/. The hostname is validated before it
// becomes a path, and the whole folder goes when a sandbox goes.
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { MachineFiles } from "../../engine/index.ts";
import { assertHostname } from "../../protocol/names.ts";

export interface VmPaths {
  dir: string;
  disk: string;
  agentSocket: string;
  serialLog: string;
  /** A suspended VM's RAM and device state. */
  stateFile: string;
  /** The engine's own files: its control socket and transcript, its log and pid file, the state socket. */
  machine: MachineFiles;
  /** For a VM that was a warm-pool clone: the name of the pool folder, now a link to this one. */
  alias: string;
}

/**
 * The engine's files in a machine's folder (a VM's or a template's). The names on disk stay QEMU's
 * (qmp.sock, qmp.log, qemu.log, mig.sock): a daemon re-attaches to machines an older one started by them.
 */
export function machineFilesIn(dir: string): MachineFiles {
  return { control: join(dir, "qmp.sock"), transcript: join(dir, "qmp.log"), log: join(dir, "qemu.log"), pidFile: join(dir, "qemu.pid"), stateSocket: join(dir, "mig.sock") };
}

/** Longest hostname the daemon generates: a 32-character group name, "-", and up to 6 digits. */
export const LONGEST_GENERATED_HOSTNAME = 39;
/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

export function vmsDir(stateDir: string): string {
  return join(stateDir, "vms");
}

export function vmPaths(stateDir: string, hostname: string): VmPaths {
  return vmPathsIn(join(vmsDir(stateDir), assertHostname(hostname)));
}

/** The same layout in any folder (a warm-pool VM lives in `vms/.pool-ID/` until it gets its name). */
export function vmPathsIn(dir: string): VmPaths {
  return {
    dir,
    disk: join(dir, "disk.qcow2"),
    agentSocket: join(dir, "agent.sock"),
    serialLog: join(dir, "serial.log"),
    stateFile: join(dir, "suspend.state"),
    machine: machineFilesIn(dir),
    alias: join(dir, "alias"),
  };
}

/**
 * Removes a VM's folder, and the alias link a warm-pool clone leaves behind (see WarmPool.take): QEMU was
 * started with paths in its pool folder and may open them again (QEMU reopens a disk by name when it
 * changes its permissions, as a migration does), so that name stays a link to the VM's folder.
 */
export async function removeVmFolder(stateDir: string, hostname: string): Promise<void> {
  const paths = vmPaths(stateDir, hostname);
  const alias = await readFile(paths.alias, "utf8").catch(() => "");
  if (POOL_FOLDER_PATTERN.test(alias.trim())) await rm(join(vmsDir(stateDir), alias.trim()), { force: true });
  await rm(paths.dir, { recursive: true, force: true });
}

/** A warm-pool clone's folder (or, once taken, the link left in its place). */
export const POOL_FOLDER_PATTERN = /^\.pool-[0-9a-f]{8}$/;

/** Unix socket paths are short; refuse a state directory too deep to hold them. */
export function assertSocketPathsFit(stateDir: string): void {
  const longest = vmPaths(stateDir, "x".repeat(LONGEST_GENERATED_HOSTNAME)).agentSocket;
  if (Buffer.byteLength(longest) > MAX_SOCKET_PATH) {
    throw new Error(
      `The state directory ${JSON.stringify(stateDir)} is too deep for VM sockets (${Buffer.byteLength(longest)} > ${MAX_SOCKET_PATH} bytes): choose a shorter --state-dir`,
    );
  }
}
