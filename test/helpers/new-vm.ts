// A new VM record's fields for store-level tests (VmStore, the expiry reaper, recovery), with overrides.
import type { NewVm } from "../../src/daemon/vm/vm-store.ts";

export function newVm(overrides: Partial<NewVm> = {}): NewVm {
  return {
    hostgroup: "sbox",
    kind: "sandbox",
    cpus: 2,
    ramBytes: 2 * 1024 ** 3,
    persistent: false,
    image: "base",
    imageVersion: "v1",
    userdata: null,
    sshKeys: [],
    importUser: null,
    tags: [],
    ip: "10.0.2.15",
    mac: "52:54:00:00:00:01",
    accel: "tcg",
    machineId: "0123456789abcdef0123456789abcdef",
    ...overrides,
  };
}
