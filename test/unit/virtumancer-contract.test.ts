// The contract fixtures of Virtumancer's wire (test/fixtures/virtumancer) checked against Virtumancer's own
// answers: its schemas accept what its server writes and refuse shapes it never writes, and the UI reader
// shows what its UI shows (a NaN where its own a458bc2 list lacks `vcpu`, a crash on a NIC without `target`).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as examples from "../fixtures/virtumancer/examples.ts";
import { brokenText, cpuPercent, datacenterCard, hardwareTab, hostDashboard, powerButtons, vmSummary } from "../fixtures/virtumancer/ui.ts";
import * as wire from "../fixtures/virtumancer/wire.ts";

describe("Virtumancer's contract fixtures", () => {
  test("accept Virtumancer's own answers", () => {
    wire.assertFits(wire.Health, { ok: true }, "health");
    wire.assertFits(wire.HostA458, examples.host, "host");
    wire.assertFits(wire.HostInfo, examples.hostInfo, "host info");
    for (const vm of examples.vmListFromDb) wire.assertFits(wire.VMView, vm, "a VM of the list");
    wire.assertFits(wire.VMInfo, examples.vmInfoLive, "a domain's live info");
    wire.assertFits(wire.VmListEntry, { ...examples.vmListFromDb[0], ...examples.vmInfoLive }, "both");
    wire.assertFits(wire.HardwareInfo, examples.hardware, "hardware");
    wire.assertFits(wire.VMStats, examples.statsRunning, "stats");
    wire.assertFits(wire.VMStats, examples.statsUnreadable, "stats of a domain libvirt cannot read");
    for (const message of [examples.wsHostsChanged, examples.wsVmsChanged, examples.wsStats]) {
      const schema = wire.serverMessageSchema(message.type);
      assert.ok(schema, message.type);
      wire.assertFits(schema, message, message.type);
    }
    wire.assertFits(wire.StatsSubscription, { type: "subscribe-vm-stats", payload: { hostId: "kvm-1", vmName: "web-1" } }, "subscribe");
  });

  test("refuse what Virtumancer never writes", () => {
    const refused: [string, Parameters<typeof wire.assertFits>[0], unknown][] = [
      ["hosts-changed with a payload (omitempty drops an empty one)", wire.HostsChanged, { type: "hosts-changed", payload: null }],
      ["memory as a string", wire.HostInfo, { ...examples.hostInfo, memory: "64G" }],
      ["a negative uint", wire.HostInfo, { ...examples.hostInfo, cpu: -1 }],
      ["a NIC without target", wire.HardwareInfo, { disks: [], networks: [{ type: "user", mac: { address: "x" }, source: { bridge: "" }, model: { model_type: "virtio" } }] }],
      ["a disk without Source", wire.HardwareInfo, { disks: [{ ...examples.hardware.disks[0], Source: undefined }], networks: [] }],
      ["a VM without vcpu", wire.VMInfo, { ...examples.vmInfoLive, vcpu: undefined }],
      ["a state beyond libvirt's", wire.VMStats, { ...examples.statsRunning, state: 9 }],
      ["a host state of another spelling", wire.Host, { id: "a", uri: "b", state: "online", task_state: "", auto_reconnect_disabled: false }],
    ];
    for (const [what, schema, value] of refused) assert.throws(() => wire.assertFits(schema, value, what), /does not fit/, what);
  });

  test("the UI reader shows a458bc2's own NaN: its list from the database has no vcpu", () => {
    const host = { ...examples.host, vms: examples.vmListFromDb, info: examples.hostInfo };
    const shown = hostDashboard(host);
    assert.deepEqual(brokenText(shown), ["CPU NaN / 16 Cores (NaN%)", "web-1 Running undefined 0 MB"]);
    assert.deepEqual(brokenText(datacenterCard(host)), ["CPU NaN% of 16 Cores"]);
    // With the live fields (what API.md promises) nothing is broken.
    const live = { ...host, vms: [{ ...examples.vmListFromDb[0], ...examples.vmInfoLive }] };
    assert.deepEqual(brokenText([...hostDashboard(live), ...datacenterCard(live), ...vmSummary(live.vms[0], examples.statsRunning)]), []);
    const [cpu, memory] = hostDashboard(live);
    assert.equal(cpu, "CPU 2 / 16 Cores (12.5%)");
    assert.match(memory ?? "", /^Memory 2 GB \/ 62\.73 GB \(3\.188\d*%\)$/);
    assert.deepEqual(powerButtons(live.vms[0]), ["shutdown", "reboot", "forceoff"]);
  });

  test("the UI reader reads memory as KiB: MiB would show a host 1024 times smaller", () => {
    const inMiB = { ...examples.hostInfo, memory: Math.round(examples.hostInfo.memory / 1024) };
    const card = datacenterCard({ ...examples.host, vms: [], info: inMiB });
    assert.equal(card[2], "Memory 0 GB / 0.1 GB");
    assert.equal(datacenterCard({ ...examples.host, vms: [], info: examples.hostInfo })[2], "Memory 0 GB / 62.7 GB");
  });

  test("the Hardware tab throws on a NIC without target, as the UI's template does", () => {
    assert.deepEqual(hardwareTab(examples.hardware), ["disk vda virtio /var/lib/libvirt/images/web-1.qcow2 qcow2", "net vnet2 52:54:00:6b:3c:58 br0 undefined"]);
    assert.throws(
      () => hardwareTab({ disks: [], networks: [{ type: "user", mac: { address: "52:54:00:00:00:01" }, source: { mode: "user" }, model: { model_type: "virtio" } }] }),
      TypeError,
    );
  });

  test("CPU use from two stats messages", () => {
    const next = { ...examples.statsRunning, cpu_time: examples.statsRunning.cpu_time + 1_000_000_000 };
    assert.equal(cpuPercent(examples.statsRunning, next, 2000), 25);
  });
});
