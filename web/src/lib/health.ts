// How a VM's health (src/protocol/vm-health.ts) reads in the dashboard: words and a tone for its badge.
import type { VmHealth } from "../../../src/protocol/vm-health.ts";

export type Tone = "good" | "busy" | "bad" | "idle";

const LABELS: Record<VmHealth, string> = {
  starting: "starting",
  ok: "healthy",
  unresponsive: "not answering",
  disk_full: "frozen: host disk full",
  io_error: "frozen: disk error",
  paused: "paused",
  stopped: "off",
};

const TONES: Record<VmHealth, Tone> = {
  starting: "busy",
  ok: "good",
  unresponsive: "bad",
  disk_full: "bad",
  io_error: "bad",
  paused: "idle",
  stopped: "idle",
};

/** A health from a host that may be newer than this dashboard is shown as it came, in a neutral tone. */
export function healthLabel(health: string): string {
  return Object.hasOwn(LABELS, health) ? LABELS[health as VmHealth] : health;
}

export function healthTone(health: string): Tone {
  return Object.hasOwn(TONES, health) ? TONES[health as VmHealth] : "idle";
}

/** Whether the health deserves a word of its own beside the VM's state (it says more than the state). */
export function healthWorthShowing(health: string | undefined, state: string): boolean {
  if (health === undefined) return false;
  if (health === "paused" && state === "paused") return false;
  if (health === "stopped" && state !== "running") return false;
  return true;
}
