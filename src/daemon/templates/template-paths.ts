// Where templates live on the host: STATE_DIR/templates/ID/ (ID is generated, never from a request, and
// checked all the same before it becomes a path). A template in the making is built in a `.b-ID` folder
// beside them and renamed when complete, so a folder named ID is always a whole template.
import { join } from "node:path";
import type { MachineFiles } from "../../engine/index.ts";
import { machineFilesIn } from "../vm/vm-paths.ts";

export const TEMPLATE_ID_PATTERN = /^t-[0-9a-f]{8}-[0-9a-f]{6}$/;

export interface TemplatePaths {
  dir: string;
  /** The guest RAM: written through by the template VM, mapped copy-on-write by each clone. */
  ram: string;
  /** Device state (a few dozen KB: the RAM is not in it). */
  state: string;
  /** The template's disk, frozen at the snapshot: every clone's overlay is backed by it. */
  disk: string;
  /** The template VM's boot log: a clone's log starts with it (it is that machine's boot). */
  serialLog: string;
  meta: string;
  // used while building only
  agentSocket: string;
  /** The template machine's engine files (see machineFilesIn). */
  machine: MachineFiles;
}

export function templatesDir(stateDir: string): string {
  return join(stateDir, "templates");
}

function pathsIn(dir: string): TemplatePaths {
  return {
    dir,
    ram: join(dir, "ram"),
    state: join(dir, "state"),
    disk: join(dir, "disk.qcow2"),
    serialLog: join(dir, "serial.log"),
    meta: join(dir, "template.json"),
    agentSocket: join(dir, "agent.sock"),
    machine: machineFilesIn(dir),
  };
}

function checkedId(id: string): string {
  if (!TEMPLATE_ID_PATTERN.test(id)) throw new Error(`Invalid template id ${JSON.stringify(id)}`);
  return id;
}

export function templatePaths(stateDir: string, id: string): TemplatePaths {
  return pathsIn(join(templatesDir(stateDir), checkedId(id)));
}

export function templateBuildPaths(stateDir: string, id: string): TemplatePaths {
  return pathsIn(join(templatesDir(stateDir), `.b-${checkedId(id)}`));
}
