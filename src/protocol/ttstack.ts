// TTstack's wire as Corral speaks it, on the controller's TTstack routes and on the daemon's agent API
// (docs/ttstack-wire-notes.md has each type with its file and line in TTstack's code): the envelope every
// answer is in, the enums as serde spells them, timestamps as Unix seconds, and how Corral's richer states map
// onto TTstack's. Corral's own fields stay beside TTstack's (serde ignores fields it does not know), never
// instead of them.
import { Type, type Static, type TSchema } from "@sinclair/typebox";
import { StringEnum } from "./slicer.ts";

// ---- the envelope (TTstack's ApiResp, crates/core/src/api.rs:119-161) ----

/** `{"ok": true, "data": …}`: a success with data. */
export function ttOk<T>(data: T): { ok: true; data: T } {
  return { ok: true, data };
}

/** `{"ok": true}`: a success without data (TTstack's ApiRespEmpty::ok; its clients read `data` as `()`). */
export const TT_DONE = { ok: true } as const;

/** The schema of a success with `data`. */
export function Envelope<T extends TSchema>(data: T) {
  return Type.Object({ ok: Type.Literal(true), data });
}

export const DoneEnvelopeSchema = Type.Object({ ok: Type.Literal(true) });

/** An error as TTstack's routes answer it: its `error`, and Corral's `code` beside. */
export const EnvelopeErrorSchema = Type.Object({ ok: Type.Literal(false), error: Type.String(), code: Type.Optional(Type.String()) });

// ---- enums (crates/core/src/model.rs) ----

export const TT_ENGINES = ["qemu", "firecracker", "bhyve", "docker", "jail"] as const;
export const TtEngineSchema = StringEnum(TT_ENGINES);
export type TtEngine = (typeof TT_ENGINES)[number];

export const TtStorageSchema = StringEnum(["file", "zvol"]);
export const TT_VM_STATES = ["running", "stopped", "paused", "creating", "failed"] as const;
export const TtVmStateSchema = StringEnum(TT_VM_STATES);
export type TtVmState = (typeof TT_VM_STATES)[number];
export const TtEnvStateSchema = StringEnum(["active", "stopped"]);
export type TtEnvState = Static<typeof TtEnvStateSchema>;
export const TtHostStateSchema = StringEnum(["online", "offline"]);

/**
 * TTstack's VmState for any state Corral has (the daemon's, and the controller's own `pending`, `error`,
 * `lost`, `deleting`); Corral's exact state goes beside it as `status`. A VM on its way somewhere reads as
 * where it still is: `stopping` and `suspending` still run; `suspended` (saved to disk) is stopped.
 */
export function ttVmState(state: string): TtVmState {
  switch (state) {
    case "running":
    case "stopping":
    case "suspending":
      return "running";
    case "paused":
      return "paused";
    case "stopped":
    case "suspended":
    case "deleting":
      return "stopped";
    case "pending":
    case "creating":
    case "booting":
      return "creating";
    default:
      // failed, error, lost: the VM cannot run as it is.
      return "failed";
  }
}

/** TTstack's EnvState: `stopped` once a stop finished, `active` otherwise (TTstack's handler.rs:355, 517, 568). */
export function ttEnvState(state: string): TtEnvState {
  return state === "stopped" ? "stopped" : "active";
}

/** Unix seconds (TTstack's timestamps are u64 seconds) of an RFC 3339 time. */
export function unixSeconds(iso: string): number {
  return Math.floor(Date.parse(iso) / 1000);
}

/** The RFC 3339 time of Unix seconds. */
export function isoOfSeconds(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}

// ---- shared structures ----

const u32 = (description?: string) => Type.Integer({ minimum: 0, ...(description ? { description } : {}) });

/** Resource (model.rs:127-141): memory and disk in MiB. */
export const TtResourceSchema = Type.Object({
  cpu_total: u32(),
  cpu_used: u32(),
  mem_total: u32("MiB"),
  mem_used: u32("MiB"),
  disk_total: u32("MiB"),
  disk_used: u32("MiB"),
  vm_count: u32(),
});
export type TtResource = Static<typeof TtResourceSchema>;

/** Guest port -> host port, the keys the guest ports as decimal strings (a BTreeMap<u16, u16> in serde's JSON). */
export const TtPortMapSchema = Type.Record(Type.String({ pattern: "^[0-9]{1,5}$" }), Type.Integer({ minimum: 0, maximum: 65535 }));

/** Vm (model.rs:180-199): TTstack's fields, every one required, `env_id` and `ip` never null. */
export const TtVmFields = {
  id: Type.String(),
  env_id: Type.String({ description: '"" for a VM made for no environment' }),
  host_id: Type.String(),
  image: Type.String(),
  engine: TtEngineSchema,
  cpu: u32(),
  mem: u32("MiB"),
  disk: u32("MiB"),
  ip: Type.String({ description: '"" while not known' }),
  port_map: TtPortMapSchema,
  state: TtVmStateSchema,
  created_at: Type.Integer({ description: "Unix seconds" }),
};

/** AgentInfo (crates/core/src/api.rs:32-39): images by name. */
export const TtAgentInfoFields = {
  host_id: Type.String(),
  resource: TtResourceSchema,
  engines: Type.Array(TtEngineSchema),
  storage: TtStorageSchema,
  images: Type.Array(Type.String()),
};
