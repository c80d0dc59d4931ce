// TTstack's per-host agent API as the daemon serves it (seed 002, "Agent Endpoints"): the controller reads
// a host's resources and images here. Sizes are in MiB, as TTstack counts them.
import { Type, type Static } from "@sinclair/typebox";

export const HostInfoSchema = Type.Object({
  id: Type.String({ description: "this host's id, generated once and kept in the state directory" }),
  hostname: Type.String(),
  cpu_total: Type.Integer({ description: "host CPU threads" }),
  cpu_used: Type.Integer({ description: "vCPUs of the VMs that run" }),
  mem_total: Type.Integer({ description: "host memory, MiB" }),
  mem_used: Type.Integer({ description: "memory of the VMs that run, MiB" }),
  disk_total: Type.Integer({ description: "the state directory's filesystem, MiB" }),
  disk_used: Type.Integer({ description: "used on that filesystem, MiB" }),
  vm_count: Type.Integer({ description: "VMs that run" }),
  engines: Type.Array(Type.String(), { description: "the engines this host runs" }),
  storage: Type.String({ description: '"file": qcow2 files' }),
  images: Type.Array(Type.String()),
});

export const AgentImageSchema = Type.Object({
  name: Type.String(),
  version: Type.String(),
  kernel_release: Type.String(),
  size_mib: Type.Integer(),
  created_at: Type.String(),
});

export type HostInfo = Static<typeof HostInfoSchema>;
export type AgentImage = Static<typeof AgentImageSchema>;

/** The one engine Corral runs. TTstack also names firecracker, docker, bhyve and jail. */
export const CORRAL_ENGINES = ["qemu"] as const;
