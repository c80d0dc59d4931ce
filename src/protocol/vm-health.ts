// A VM's health as every API shows it, beside Slicer's `status`: whether the guest really runs and answers.
// `status` says what was asked of the VM (Running, Paused, Stopped); `health` says what it is doing now.
import { Type, type Static } from "@sinclair/typebox";

/**
 * - `starting`: QEMU runs, the guest agent has not answered yet (boot, reboot, restore);
 * - `ok`: the agent answered its last liveness check (or any call since);
 * - `unresponsive`: the agent missed its last liveness checks (a wedged guest: a fork bomb, a stopped agent);
 * - `disk_full`: QEMU stopped the vCPUs because the host could not store what the guest wrote to its disk
 *   (the state directory's filesystem is full); `POST /vm/HOST/resume` once there is room again;
 * - `io_error`: QEMU stopped the vCPUs on another disk error;
 * - `paused`: paused on request;
 * - `stopped`: no QEMU process (stopped, suspended, failed; `last_error` says why a VM failed).
 */
export const VM_HEALTH = ["starting", "ok", "unresponsive", "disk_full", "io_error", "paused", "stopped"] as const;
export type VmHealth = (typeof VM_HEALTH)[number];

// Written out rather than with slicer.ts's StringEnum: slicer.ts imports this file.
export const VmHealthStateSchema = Type.Unsafe<VmHealth>({
  type: "string",
  enum: [...VM_HEALTH],
  description: "starting, ok, unresponsive, disk_full, io_error, paused or stopped",
});

/** The fields every VM view carries (GET /vm/HOST, /nodes, TTstack's /api/vms, the controller's VM lists). */
export const HealthFieldsSchema = Type.Object({
  health: VmHealthStateSchema,
  /** Why, when the health is not `ok`: a sentence with the cause and what to do. */
  health_detail: Type.Optional(Type.String()),
  /** When the health last changed (RFC 3339), when this daemon saw it change. */
  health_since: Type.Optional(Type.String()),
});
export type HealthFields = Static<typeof HealthFieldsSchema>;

/** Healths in which the guest cannot run anything: its vCPUs are stopped by QEMU because of its disk. */
export function isFrozenByDisk(health: VmHealth): boolean {
  return health === "disk_full" || health === "io_error";
}
