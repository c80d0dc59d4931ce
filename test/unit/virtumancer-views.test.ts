// What the controller serves on Virtumancer's wire (/api/v1), from what a Corral daemon reports: every view
// fits Virtumancer's contract schemas (test/fixtures/virtumancer/wire.ts) and reads cleanly through its UI's
// computations (ui.ts): memory in KiB, vcpu present, uptime -1 when not running, NICs with a target.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { libvirtState } from "../../src/protocol/controller.ts";
import type { VmHardware } from "../../src/protocol/ttstack-agent.ts";
import type { HostReport, ReportedVm } from "../../src/controller/host-report.ts";
import { domainUuid, uptimeSeconds, v1Hardware, v1Host, v1HostInfo, v1Vm } from "../../src/controller/virtumancer-views.ts";
import { brokenText, datacenterCard, hardwareTab, hostDashboard, powerButtons, vmSummary } from "../fixtures/virtumancer/ui.ts";
import * as wire from "../fixtures/virtumancer/wire.ts";

const NOW = new Date("2026-01-10T12:00:00.000Z");

const info: HostReport = {
  id: "h-0123456789ab",
  hostname: "build-7",
  cpu_total: 8,
  threads_per_core: 2,
  cpu_used: 2,
  mem_total: 24_049,
  mem_used: 512,
  disk_total: 258_020,
  disk_used: 31_985,
  vm_count: 1,
  engines: ["qemu"],
  storage: "file",
  images: ["base"],
};

function agentVm(overrides: Partial<ReportedVm> = {}): ReportedVm {
  return {
    id: "team-1",
    env_id: "team",
    hostgroup: "ttstack",
    image: "base",
    engine: "qemu",
    cpu: 2,
    mem: 512,
    disk: 4096,
    ports: [22],
    port_map: { "22": 41_203 },
    deny_outgoing: false,
    state: "running",
    ip: "10.0.2.15",
    mac: "52:54:00:12:34:56",
    created_at: "2026-01-10T11:00:00.000Z",
    last_error: null,
    started_at: "2026-01-10T11:58:30.000Z",
    health: "ok",
    ...overrides,
  };
}

const hardware: VmHardware = {
  disks: [
    {
      type: "file",
      device: "disk",
      driver: { driver_name: "qemu", type: "qcow2" },
      path: "/var/lib/corral/vms/team-1/disk.qcow2",
      target: { dev: "vda", bus: "virtio" },
      size_mib: 4096,
    },
  ],
  networks: [{ type: "user", mac: { address: "52:54:00:12:34:56" }, source: { mode: "user" }, model: { model_type: "virtio" } }],
};

const host = { id: "kvm-1", uri: "http://127.0.0.1:8080", state: "online" as const, disconnected: false, hostname: "build-7", info };

describe("Virtumancer's views of Corral's hosts and VMs", () => {
  test("a host: CONNECTED while online, ERROR when offline, DISCONNECTED without reconnecting after a disconnect", () => {
    wire.assertFits(wire.Host, v1Host(host), "host");
    assert.deepEqual(v1Host(host), { id: "kvm-1", uri: "http://127.0.0.1:8080", state: "CONNECTED", task_state: "", auto_reconnect_disabled: false });
    assert.equal(v1Host({ ...host, state: "offline" }).state, "ERROR");
    const disconnected = v1Host({ ...host, state: "offline", disconnected: true });
    wire.assertFits(wire.Host, disconnected, "a disconnected host");
    assert.deepEqual([disconnected.state, disconnected.auto_reconnect_disabled], ["DISCONNECTED", true]);
  });

  test("host info in libvirt's units: memory in KiB, threads per core", () => {
    const shown = v1HostInfo(host);
    wire.assertFits(wire.HostInfo, shown, "host info");
    assert.deepEqual(shown, { hostname: "build-7", cpu: 8, memory: 24_049 * 1024, cores: 4, threads: 2 });
    assert.deepEqual(v1HostInfo({ ...host, info: { ...info, threads_per_core: undefined } }).threads, 1);
    assert.throws(
      () => v1HostInfo({ ...host, info: null }),
      (err: Error & { code?: string }) => err.code === "host_unreachable" && /has not answered/.test(err.message),
    );
  });

  test("a VM carries every field Virtumancer's server writes and its UI reads, in KiB", () => {
    const vm = v1Vm("kvm-1", agentVm(), 0, NOW);
    wire.assertFits(wire.VmListEntry, vm, "VM");
    assert.deepEqual(
      [vm.name, vm.state, vm.vcpu, vm.vcpu_count, vm.max_mem, vm.memory, vm.memory_bytes, vm.uptime, vm.id, vm.db_id],
      ["team-1", 1, 2, 2, 524_288, 524_288, 536_870_912, 90, 1, 1],
    );
    assert.deepEqual([vm.status, vm.env_id, vm.health, vm.graphics], ["running", "team", "ok", { vnc: false, spice: false }]);
    assert.match(vm.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    // A libvirt host's domain keeps its own UUID.
    assert.equal(v1Vm("kvm-1", agentVm({ uuid: "6505be9e-b440-47b3-96a4-d73db9d011d1" }), 0, NOW).uuid, "6505be9e-b440-47b3-96a4-d73db9d011d1");
  });

  test("a stopped VM: uptime -1, no domain id, shut off (5) with Start offered", () => {
    const vm = v1Vm("kvm-1", agentVm({ state: "stopped", started_at: null }), 3, NOW);
    wire.assertFits(wire.VmListEntry, vm, "VM");
    assert.deepEqual([vm.state, vm.uptime, vm.id, vm.db_id], [5, -1, 0, 4]);
    assert.deepEqual(powerButtons(vm), ["start"]);
    assert.ok(vmSummary(vm).includes("Uptime N/A"));
  });

  test("libvirt's state numbers: a suspended VM is shut off (Start restores it), a VM being made has none yet", () => {
    assert.deepEqual(["creating", "booting", "running", "paused", "stopping", "suspending", "stopped", "suspended", "failed"].map(libvirtState), [0, 1, 1, 3, 4, 4, 5, 5, 6]);
  });

  test("uptime: from the run's start; -1 when not running or not known (a daemon older than started_at)", () => {
    assert.equal(uptimeSeconds(agentVm(), NOW), 90);
    assert.equal(uptimeSeconds(agentVm({ state: "paused" }), NOW), -1);
    assert.equal(uptimeSeconds(agentVm({ started_at: undefined }), NOW), -1);
    assert.equal(uptimeSeconds(agentVm({ started_at: "not a time" }), NOW), -1);
    assert.equal(uptimeSeconds(agentVm({ started_at: "2026-01-10T12:00:05.000Z" }), NOW), 0, "a clock a little ahead is not a negative uptime");
  });

  test("the same VM keeps its UUID; a VM made again under its name gets another", () => {
    assert.equal(domainUuid("kvm-1", agentVm()), domainUuid("kvm-1", agentVm({ state: "stopped" })));
    assert.notEqual(domainUuid("kvm-1", agentVm()), domainUuid("kvm-1", agentVm({ created_at: "2026-01-10T11:30:00.000Z" })));
    assert.notEqual(domainUuid("kvm-1", agentVm()), domainUuid("kvm-2", agentVm()));
  });

  test("Virtumancer's UI shows nothing broken: no NaN, undefined or null on any page", () => {
    const vms = [v1Vm("kvm-1", agentVm(), 0, NOW), v1Vm("kvm-1", agentVm({ id: "team-2", state: "stopped", started_at: null }), 1, NOW)];
    const uiHost = { id: "kvm-1", uri: host.uri, vms, info: v1HostInfo(host) };
    const shown = [...datacenterCard(uiHost), ...hostDashboard(uiHost), ...vms.flatMap((vm) => vmSummary(vm))];
    assert.deepEqual(brokenText(shown), []);
    assert.ok(shown.includes("CPU 2 / 8 Cores (25%)"), shown.join("\n"));
    assert.ok(shown.includes("team-1 Running 2 512 MB"), shown.join("\n"));
    assert.ok(shown.includes("Memory 0.5 GB / 23.5 GB"), shown.join("\n"));
  });

  test("hardware in libvirt's shape: Source beside path, NICs with a target and a model the UI reads", () => {
    const shown = v1Hardware(hardware);
    wire.assertFits(wire.HardwareInfo, shown, "hardware");
    assert.deepEqual(shown.disks[0]?.Source, { File: "/var/lib/corral/vms/team-1/disk.qcow2", Dev: "" });
    assert.deepEqual(hardwareTab(shown), ["disk vda virtio /var/lib/corral/vms/team-1/disk.qcow2 qcow2", "net eth0 52:54:00:12:34:56  virtio"]);
    assert.throws(() => hardwareTab(hardware), TypeError, "the daemon's own shape is what crashed the tab");
  });

  test("a bridge-mode NIC shows its bridge and the host's TAP as Virtumancer's source.bridge and target.dev", () => {
    const bridged: VmHardware = {
      disks: [],
      networks: [
        {
          type: "bridge",
          mac: { address: "52:54:00:aa:bb:cc" },
          source: { mode: "bridge", bridge: "brvm0" },
          model: { model_type: "virtio" },
          target: { dev: "vmtap3" },
          ip: { address: "192.168.137.2/24", gateway: "192.168.137.1" },
          policy: { source: "host_group", allow: [], drop: [], deny_outgoing: false },
        },
        { type: "ethernet", mac: { address: "52:54:00:aa:bb:cd" }, source: { mode: "isolated" }, model: { model_type: "virtio" }, target: { dev: "ci0a1b-7" } },
      ],
    };
    const shown = v1Hardware(bridged);
    wire.assertFits(wire.HardwareInfo, shown, "hardware");
    assert.deepEqual(shown.networks[0], {
      type: "bridge",
      mac: { address: "52:54:00:aa:bb:cc" },
      source: { bridge: "brvm0", network: "" },
      model: { model_type: "virtio", type: "virtio" },
      target: { dev: "vmtap3" },
    });
    assert.deepEqual([shown.networks[1]?.source.bridge, shown.networks[1]?.target.dev], ["", "ci0a1b-7"]);
    assert.deepEqual(hardwareTab(shown), ["net vmtap3 52:54:00:aa:bb:cc brvm0 virtio", "net ci0a1b-7 52:54:00:aa:bb:cd  virtio"]);
  });

  test("a libvirt host's NIC on a libvirt network shows it as source.network", () => {
    const shown = v1Hardware({
      disks: [],
      networks: [
        { type: "network", mac: { address: "52:54:00:aa:bb:ce" }, source: { mode: "network", network: "default" }, model: { model_type: "virtio" }, target: { dev: "vnet0" } },
      ],
    });
    wire.assertFits(wire.HardwareInfo, shown, "hardware");
    assert.deepEqual(shown.networks[0]?.source, { bridge: "", network: "default" });
  });
});
