// The controller passes on each VM's health as its host last reported it (the TTstack VM entry the heartbeat
// keeps), and leaves it out when the host has not said (a daemon older than the field).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { FleetVmRecord } from "../../src/controller/db/index.ts";
import { fleetVmView, reportedHealth } from "../../src/controller/env-views.ts";
import type { ReportedVm as AgentVm } from "../../src/controller/host-report.ts";

const vm: FleetVmRecord = {
  id: "team-1",
  envId: "team",
  hostId: "h1",
  image: "base",
  engine: "qemu",
  cpu: 1,
  mem: 512,
  disk: 4096,
  ports: [],
  denyOutgoing: false,
  sshKeys: [],
  portMap: { "22": 41000 },
  state: "running",
  ip: "10.0.2.15",
  error: null,
  createdAt: "2026-01-01T00:00:00.000Z",
  updatedAt: "2026-01-01T00:00:00.000Z",
};

const reported = (fields: Partial<AgentVm>): AgentVm => ({
  id: "team-1",
  env_id: "team",
  hostgroup: "ttstack",
  image: "base",
  engine: "qemu",
  cpu: 1,
  mem: 512,
  disk: 4096,
  ports: [22],
  port_map: { "22": 41000 },
  deny_outgoing: false,
  state: "paused",
  ip: "10.0.2.15",
  mac: "52:54:00:00:00:01",
  created_at: "2026-01-01T00:00:00.000Z",
  last_error: null,
  ...fields,
});

describe("the controller's VM health", () => {
  test("a fleet VM carries the health its host reported for it", () => {
    const host = { addr: "127.0.0.1:8080", vms: [reported({ id: "other-1", health: "ok" }), reported({ health: "disk_full", health_detail: "QEMU stopped VM …" })] };
    const view = fleetVmView(vm, host);
    assert.equal(view.health, "disk_full");
    assert.equal(view.health_detail, "QEMU stopped VM …");
    assert.equal(view.host_addr, "127.0.0.1");
  });

  test("no report, an older host, or only an address: no health field at all", () => {
    assert.equal("health" in fleetVmView(vm, { addr: "127.0.0.1:8080", vms: [] }), false);
    assert.equal("health" in fleetVmView(vm, { addr: "127.0.0.1:8080", vms: [reported({})] }), false);
    assert.equal("health" in fleetVmView(vm, { addr: "127.0.0.1:8080" }), false);
    assert.deepEqual(reportedHealth(undefined), {});
    assert.deepEqual(reportedHealth(reported({ health: "unresponsive" })), { health: "unresponsive" });
  });
});
