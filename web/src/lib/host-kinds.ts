// What the dashboard says of each kind of host (src/controller/host-report.ts), and what it offers on them: a
// libvirt daemon's domains have no shell or serial log through the controller (its driver answers 501
// `unsupported_by_host`) and take no environments, so those panels are left out rather than shown failing.
import type { Host } from "../../../src/protocol/controller.ts";

export type HostKind = Host["kind"];

export const HOST_KIND_NAMES: Record<HostKind, string> = { corral: "Corral daemon", ttstack: "TTstack agent", libvirt: "libvirt daemon" };

/** Whether the controller can open a VM's shell and read its serial log on this kind of host. */
export function hasConsole(kind: HostKind | undefined): boolean {
  return kind !== "libvirt";
}

/**
 * Where the host is reached, as one short line: a libvirt daemon by its URI (its `addr` is only the machine),
 * the others by HOST:PORT.
 */
export function hostPlace(host: Pick<Host, "kind" | "addr" | "uri">): string {
  return host.kind === "libvirt" ? host.uri : host.addr;
}

/**
 * VM states in which a VM has a process (its power actions are shutdown, reboot, force off, reset); a libvirt
 * host's driver names its domains' states in the daemon's words too.
 */
const ON_STATES = new Set(["running", "booting", "paused"]);

export function isOn(state: string | undefined): boolean {
  return state !== undefined && ON_STATES.has(state);
}

/** States in which a VM's guest runs, whose live stats are worth asking for. */
const RUNNING_STATES = new Set(["running", "booting"]);

export function isRunning(state: string | undefined): boolean {
  return state !== undefined && RUNNING_STATES.has(state);
}
