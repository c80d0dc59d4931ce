// A libvirt host in the controller's views: TTstack's /api/hosts wire stays what TTstack's types read (its
// engine list only names TTstack's engines), and Virtumancer's host and VM views carry the domain's own UUID.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { HostRecord } from "../../src/controller/db/index.ts";
import { hostView } from "../../src/controller/hosts.ts";
import { v1Host, v1Vm } from "../../src/controller/virtumancer-views.ts";
import { envelopeError } from "../fixtures/ttstack/contract.ts";

const libvirtHost: HostRecord = {
  id: "kvm-1",
  addr: "10.0.0.4",
  uri: "qemu+ssh://root@10.0.0.4/system?keyfile=/root/.ssh/id_ed25519",
  token: null,
  kind: "libvirt",
  state: "online",
  hostname: "kvm-1.lan",
  info: {
    id: "kvm-1.lan",
    hostname: "kvm-1.lan",
    cpu_total: 8,
    cpu_used: 2,
    mem_total: 32000,
    mem_used: 2048,
    disk_total: 0,
    disk_used: 0,
    vm_count: 1,
    engines: ["qemu", "kvm"],
    storage: "dir",
    images: [],
  },
  vms: [
    {
      id: "Win10",
      env_id: null,
      image: "",
      engine: "qemu",
      cpu: 2,
      mem: 2048,
      disk: 0,
      ports: [],
      port_map: {},
      state: "running",
      ip: "",
      created_at: "2026-12-07T03:00:00.000Z",
      last_error: null,
      uuid: "6505be9e-b440-47b3-96a4-d73db9d011d1",
    },
  ],
  reserved: { cpu: 0, mem: 0, disk: 0 },
  failures: 0,
  disconnected: false,
  createdAt: "2026-12-07T03:00:00.000Z",
  registeredAt: "2026-12-07T03:00:00.000Z",
  lastSeenAt: "2026-12-07T03:00:00.000Z",
  lastError: null,
};

describe("a libvirt host in the controller's views", () => {
  test("TTstack's GET /api/hosts reads it: its kind and URI beside, engines only TTstack's, storage TTstack's", () => {
    const view = hostView(libvirtHost);
    assert.deepEqual([view.kind, view.uri, view.engines, view.storage], ["libvirt", libvirtHost.uri, ["qemu"], "file"]);
    assert.equal(envelopeError("Host[]", { ok: true, data: [view] }), undefined);
    // Without the filter TTstack's serde would refuse the list: the check can fail.
    assert.notEqual(envelopeError("Host[]", { ok: true, data: [{ ...view, engines: ["qemu", "kvm"] }] }), undefined);
  });

  test("Virtumancer's views: its URI as given, the domain's own UUID and name", () => {
    assert.deepEqual(v1Host(libvirtHost), { id: "kvm-1", uri: libvirtHost.uri, state: "CONNECTED", task_state: "", auto_reconnect_disabled: false });
    const vm = v1Vm("kvm-1", libvirtHost.vms[0]!, 0, new Date("2026-12-07T03:01:00Z"));
    assert.deepEqual([vm.name, vm.uuid, vm.state, vm.vcpu, vm.max_mem], ["Win10", "6505be9e-b440-47b3-96a4-d73db9d011d1", 1, 2, 2048 * 1024]);
  });
});
