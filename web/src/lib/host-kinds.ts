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
 * VM states in which a VM runs (its power actions are shutdown, reboot, force off, reset): a Corral daemon's
 * (running, booting, paused) and libvirt's own names for a domain with a process (virsh domstate).
 */
const ON_STATES = new Set(["running", "booting", "paused", "idle", "blocked", "in shutdown", "pmsuspended"]);

export function isOn(state: string | undefined): boolean {
  return state !== undefined && ON_STATES.has(state);
}

/** States in which a VM's guest runs, whose live stats are worth asking for. */
const RUNNING_STATES = new Set(["running", "booting", "idle", "blocked"]);

export function isRunning(state: string | undefined): boolean {
  return state !== undefined && RUNNING_STATES.has(state);
}
