// The create-environment form's values and how they become a POST /api/envs body (seed 002's CreateEnvReq).
// Pure: the form component and the tests share it. The controller validates again; this catches typos early
// with messages that say which field.
import type { CreateEnv, VmSpec } from "../../../src/protocol/controller.ts";

export type LifetimeUnit = "minutes" | "hours" | "days";

export interface VmFormValues {
  image: string;
  engine: string;
  cpu: string;
  mem: string;
  disk: string;
  ports: string;
  denyOutgoing: boolean;
}

export interface EnvFormValues {
  id: string;
  owner: string;
  sshKeys: string;
  lifetime: string;
  lifetimeUnit: LifetimeUnit;
  vms: VmFormValues[];
}

/** TTstack's names (its validate_name): the controller's ENV_ID_PATTERN. */
const ENV_ID = /^(?!\.)(?!.*\.\.)[A-Za-z0-9._-]{1,128}$/;
const UNIT_SECONDS: Record<LifetimeUnit, number> = { minutes: 60, hours: 3600, days: 86400 };
const MAX_LIFETIME_SECONDS = 30 * 86400;

export function blankVm(image = ""): VmFormValues {
  return { image, engine: "qemu", cpu: "2", mem: "1024", disk: "40960", ports: "", denyOutgoing: false };
}

export function blankEnvForm(image = ""): EnvFormValues {
  return { id: "", owner: "", sshKeys: "", lifetime: "6", lifetimeUnit: "hours", vms: [blankVm(image)] };
}

/** SSH public keys, one per line; blank lines and # comments skipped. */
export function parseSshKeys(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
}

/** "80, 443 8080" → [80, 443, 8080]; throws on anything that is not a port. */
export function parsePorts(text: string): number[] {
  const words = text.split(/[\s,]+/).filter((w) => w !== "");
  return words.map((word) => {
    const port = Number(word);
    if (!/^\d+$/.test(word) || port < 1 || port > 65535) throw new Error(`"${word}" is not a port (1-65535)`);
    return port;
  });
}

function integer(text: string, what: string, min: number, max: number): number {
  const value = Number(text.trim());
  if (text.trim() === "" || !Number.isInteger(value) || value < min || value > max) throw new Error(`${what} must be a whole number from ${min} to ${max}, got "${text}"`);
  return value;
}

export type BuiltRequest = { ok: true; body: CreateEnv } | { ok: false; error: string };

export function buildCreateEnv(values: EnvFormValues): BuiltRequest {
  try {
    const id = values.id.trim();
    if (!ENV_ID.test(id)) throw new Error(`Environment ID must be letters, digits, ".", "_" and "-" (1-128, not starting with "." nor holding ".."), got "${id}"`);
    const amount = Number(values.lifetime.trim());
    if (values.lifetime.trim() === "" || !Number.isFinite(amount) || amount <= 0) throw new Error(`Lifetime must be a positive number, got "${values.lifetime}"`);
    const lifetime = Math.round(amount * UNIT_SECONDS[values.lifetimeUnit]);
    if (lifetime > MAX_LIFETIME_SECONDS) throw new Error("Lifetime can be at most 30 days");
    if (values.vms.length === 0) throw new Error("Add at least one VM");
    const vms = values.vms.map((vm, i): VmSpec => {
      const which = `VM ${i + 1}`;
      const image = vm.image.trim();
      if (image === "") throw new Error(`${which}: choose an image`);
      let ports: number[];
      try {
        ports = parsePorts(vm.ports);
      } catch (cause) {
        throw new Error(`${which}: ${(cause as Error).message}`);
      }
      return {
        image,
        engine: vm.engine.trim() || "qemu",
        cpu: integer(vm.cpu, `${which}: vCPUs`, 1, 64),
        mem: integer(vm.mem, `${which}: memory (MiB)`, 128, 1024 * 1024),
        disk: integer(vm.disk, `${which}: disk (MiB)`, 1024, 64 * 1024 * 1024),
        ports,
        deny_outgoing: vm.denyOutgoing,
      };
    });
    const owner = values.owner.trim();
    const keys = parseSshKeys(values.sshKeys);
    // No keys is allowed (as TTstack allows it): the VMs are then reached through the dashboard's shell.
    return { ok: true, body: { id, ...(owner ? { owner } : {}), ...(keys.length > 0 ? { ssh_keys: keys } : {}), vms, lifetime } };
  } catch (cause) {
    return { ok: false, error: (cause as Error).message };
  }
}
