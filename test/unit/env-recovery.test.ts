// The decisions behind recovering an environment whose controller died mid-create, and behind a heartbeat's
// update of a `pending` VM: pure functions over the controller's records and what a host answers. Every
// decision is made for one fleet (FLEET): a VM another fleet made is never taken for this fleet's.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { FleetVmRecord } from "../../src/controller/db/index.ts";
import * as recovery from "../../src/controller/env-recovery.ts";
import { createOutcome, type HostView } from "../../src/controller/env-recovery.ts";
import * as heartbeat from "../../src/controller/heartbeat.ts";
import type { ReportedVm } from "../../src/controller/host-report.ts";
import * as hostVms from "../../src/controller/host-vms.ts";

const FLEET = "fleet-a";
type AgentVm = ReportedVm;
const differenceFrom = (vm: FleetVmRecord, there: ReportedVm) => hostVms.differenceFrom(vm, there, FLEET);
const planCreateStep = (vm: FleetVmRecord, view: HostView) => recovery.planCreateStep(vm, view, FLEET);
const planDeleteStep = (vm: FleetVmRecord, view: HostView) => recovery.planDeleteStep(vm, view, FLEET);
const refreshPatch = (vm: FleetVmRecord, view: HostView) => recovery.refreshPatch(vm, view, FLEET);
const heartbeatPatch = (hostId: string, vm: FleetVmRecord, there: ReportedVm | undefined) => heartbeat.heartbeatPatch(hostId, vm, there, FLEET);

function record(more: Partial<FleetVmRecord> = {}): FleetVmRecord {
  return {
    id: "team-1",
    envId: "team",
    hostId: "h1",
    image: "base",
    engine: "qemu",
    cpu: 2,
    mem: 1024,
    disk: 4096,
    ports: [8080],
    denyOutgoing: false,
    sshKeys: [],
    portMap: {},
    state: "pending",
    ip: null,
    error: null,
    createdAt: "2030-01-01T12:00:00.000Z",
    updatedAt: "2030-01-01T12:00:00.000Z",
    ...more,
  };
}

function onHost(more: Partial<AgentVm> = {}): AgentVm {
  return {
    id: "team-1",
    env_id: "team",
    fleet_id: FLEET,
    hostgroup: "ttstack",
    image: "base",
    engine: "qemu",
    cpu: 2,
    mem: 1024,
    disk: 4096,
    ports: [22, 8080],
    port_map: { "22": 41022, "8080": 41080 },
    deny_outgoing: false,
    state: "booting",
    ip: "10.0.2.15",
    mac: "52:54:00:12:34:56",
    created_at: "2030-01-01T12:00:01.000Z",
    last_error: null,
    ...more,
  };
}

const answered = (...vms: AgentVm[]): HostView => ({ kind: "answered", vms: new Map(vms.map((vm) => [vm.id, vm])) });
const adoptedFrom = (there: AgentVm) => ({ state: there.state, portMap: there.port_map, ip: there.ip, error: there.last_error });

describe("differenceFrom: is the host's VM of this name the VM the record describes", () => {
  test("the same VM: port 22, which the host always adds, and the port order do not count", () => {
    assert.equal(differenceFrom(record({ ports: [8080, 9090] }), onHost({ ports: [9090, 22, 8080] })), undefined);
    assert.equal(differenceFrom(record({ ports: [] }), onHost({ ports: [22] })), undefined);
    assert.equal(differenceFrom(record(), onHost({ disk: 9999 })), undefined, "the host reports the image's size when it is larger");
  });

  test("a stranger with the name: each difference is named", () => {
    const cases: [Partial<AgentVm>, RegExp][] = [
      [{ env_id: null }, /not made for an environment/],
      [{ env_id: "other" }, /belongs to environment "other"/],
      [{ image: "debian" }, /image is "debian", not "base"/],
      [{ cpu: 1 }, /1 vCPUs, not 2/],
      [{ mem: 512 }, /512 MiB of memory, not 1024/],
      [{ deny_outgoing: true }, /outgoing traffic is denied/],
      [{ ports: [22] }, /forwards ports \[\], not \[8080\]/],
      [{ fleet_id: "fleet-b" }, /made by another fleet controller/],
    ];
    for (const [change, reason] of cases) assert.match(differenceFrom(record(), onHost(change)) ?? "the same", reason, JSON.stringify(change));
  });

  test("what a host does not say is not held against it (a TTstack agent keeps no fleet, no outgoing policy)", () => {
    const { fleet_id: _fleet, deny_outgoing: _deny, ...bare } = onHost();
    assert.equal(differenceFrom(record(), bare), undefined);
    assert.equal(differenceFrom(record(), onHost({ fleet_id: null })), undefined, "a VM from before fleets were kept");
  });
});

describe("madeByFleet: a VM is provably this fleet's only when its host kept this fleet's id", () => {
  test("this fleet's id: yes; another's, none, or a host that keeps none: no", () => {
    assert.equal(hostVms.madeByFleet(onHost(), FLEET), true);
    assert.equal(hostVms.madeByFleet(onHost({ fleet_id: "fleet-b" }), FLEET), false);
    assert.equal(hostVms.madeByFleet(onHost({ fleet_id: null }), FLEET), false);
    const { fleet_id: _fleet, ...ttstackAgents } = onHost();
    assert.equal(hostVms.madeByFleet(ttstackAgents, FLEET), false);
  });
});

describe("planCreateStep: each VM of a create whose controller died", () => {
  test("pending, and its host has it (the dead controller's request got there): adopted as it is there", () => {
    const there = onHost({ state: "running" });
    assert.deepEqual(planCreateStep(record(), answered(there)), { kind: "adopt", patch: adoptedFrom(there) });
  });

  test("pending, and its host does not have it: created now", () => {
    assert.deepEqual(planCreateStep(record(), answered(onHost({ id: "team-2" }))), { kind: "create" });
  });

  test("pending, and its host has a stranger of that name: failed, never adopted", () => {
    const step = planCreateStep(record(), answered(onHost({ env_id: "old-team" })));
    assert.equal(step.kind, "fail");
    assert.match(
      step.kind === "fail" ? step.error : "",
      /^Cannot create it: host "h1" already has a VM named "team-1" that is not this one \(it belongs to environment "old-team"\)$/,
    );
  });

  test("pending, and its host does not answer: wait while it may come back, fail once it is offline or gone", () => {
    assert.deepEqual(planCreateStep(record(), { kind: "unreachable", reason: "ECONNREFUSED", offline: false }), { kind: "wait", reason: "ECONNREFUSED" });
    assert.deepEqual(planCreateStep(record(), { kind: "unreachable", reason: "ECONNREFUSED", offline: true }), {
      kind: "fail",
      error: 'Cannot finish creating it: host "h1" is offline (ECONNREFUSED)',
    });
    assert.deepEqual(planCreateStep(record(), { kind: "gone" }), { kind: "fail", error: 'Cannot finish creating it: host "h1" is no longer registered' });
  });

  test("already made before the crash: refreshed from its host, lost if the host no longer has it, kept when the host is silent", () => {
    const made = record({ state: "booting", portMap: { "22": 41022, "8080": 41080 }, ip: "10.0.2.15" });
    const there = onHost({ state: "running" });
    assert.deepEqual(planCreateStep(made, answered(there)), { kind: "adopt", patch: adoptedFrom(there) });
    assert.deepEqual(planCreateStep(made, answered()), { kind: "adopt", patch: { state: "lost", error: 'Host "h1" no longer has this VM' } });
    assert.deepEqual(planCreateStep(made, { kind: "unreachable", reason: "timeout", offline: false }), { kind: "keep" });
    assert.deepEqual(planCreateStep(made, { kind: "gone" }), { kind: "keep" });
  });

  test("refused before the crash (`error`): the verdict stands, whatever the host says", () => {
    const refused = record({ state: "error", error: "Image not found (404 image_not_found)" });
    assert.deepEqual(planCreateStep(refused, answered()), { kind: "keep" });
    assert.deepEqual(planCreateStep(refused, answered(onHost())), { kind: "keep" });
    assert.equal(refreshPatch(refused, answered()), undefined);
  });
});

describe("createOutcome: the state a create ends in", () => {
  const states = (...list: FleetVmRecord["state"][]) => list.map((state) => ({ state }));
  test("running when every VM was made, failed when none was, partial otherwise; undefined while one is pending", () => {
    assert.equal(createOutcome(states("booting", "running", "creating")), "running");
    assert.equal(createOutcome(states("running", "error")), "partial");
    assert.equal(createOutcome(states("running", "lost")), "partial");
    assert.equal(createOutcome(states("running", "failed")), "partial", "a VM that failed on its host was not made");
    assert.equal(createOutcome(states("error", "error")), "failed");
    assert.equal(createOutcome([]), "failed");
    assert.equal(createOutcome(states("running", "pending")), undefined);
  });
});

describe("planDeleteStep: each VM of an environment being deleted", () => {
  test("deleted on its host when the host's VM of that name is this environment's; forgotten when the host lacks it or is gone", () => {
    assert.deepEqual(planDeleteStep(record(), answered(onHost())), { kind: "delete" });
    assert.deepEqual(planDeleteStep(record(), answered(onHost({ image: "debian" }))), { kind: "delete" }, "an older VM of this environment's id is its garbage too");
    assert.deepEqual(planDeleteStep(record(), answered()), { kind: "forget", stranger: false });
    assert.deepEqual(planDeleteStep(record(), { kind: "gone" }), { kind: "forget", stranger: false });
  });

  test("a VM of that name that is not this environment's (it took the name first) is left alone", () => {
    assert.deepEqual(planDeleteStep(record({ state: "error" }), answered(onHost({ env_id: "intruder" }))), { kind: "forget", stranger: true });
    assert.deepEqual(planDeleteStep(record({ state: "error" }), answered(onHost({ env_id: null }))), { kind: "forget", stranger: true });
  });

  test("another fleet's VM of the same name and environment id (a host shared by two controllers) is left alone", () => {
    assert.deepEqual(planDeleteStep(record(), answered(onHost({ fleet_id: "fleet-b" }))), { kind: "forget", stranger: true });
    const { fleet_id: _fleet, ...ttstackAgents } = onHost();
    assert.deepEqual(planDeleteStep(record(), answered(ttstackAgents)), { kind: "delete" }, "a host that keeps no fleet: the environment's id decides");
  });

  test("a host that does not answer: tried again later, offline or not", () => {
    for (const offline of [false, true])
      assert.deepEqual(planDeleteStep(record(), { kind: "unreachable", reason: "ECONNREFUSED", offline }), { kind: "retry", reason: "ECONNREFUSED" });
  });
});

describe("heartbeatPatch: what a host's report changes in a VM's record", () => {
  test("a pending VM the host has (and is this one) takes the host's state, ports and address", () => {
    const there = onHost({ state: "running" });
    assert.deepEqual(heartbeatPatch("h1", record(), there), { state: "running", portMap: there.port_map, ip: "10.0.2.15" });
  });

  test("a pending VM the host does not list stays pending (its create may be in flight), and a stranger is not taken for it", () => {
    assert.equal(heartbeatPatch("h1", record(), undefined), undefined);
    assert.equal(heartbeatPatch("h1", record(), onHost({ env_id: "old-team" })), undefined);
  });

  test("a VM the controller acts on (deleting) or gave up on (error) is left alone", () => {
    assert.equal(heartbeatPatch("h1", record({ state: "deleting" }), undefined), undefined);
    assert.equal(heartbeatPatch("h1", record({ state: "error" }), onHost()), undefined);
  });

  test("a made VM follows its host: a new state or port map, lost when gone, found again when back", () => {
    const made = record({ state: "booting", portMap: { "22": 41022, "8080": 41080 }, ip: "10.0.2.15" });
    assert.equal(heartbeatPatch("h1", made, onHost()), undefined, "nothing changed");
    assert.deepEqual(heartbeatPatch("h1", made, onHost({ state: "running" })), { state: "running", portMap: { "22": 41022, "8080": 41080 }, ip: "10.0.2.15" });
    assert.deepEqual(heartbeatPatch("h1", made, undefined), { state: "lost", error: 'Host "h1" no longer has this VM' });
    assert.equal(heartbeatPatch("h1", record({ state: "lost" }), undefined), undefined);
    assert.deepEqual(heartbeatPatch("h1", record({ state: "lost" }), onHost({ state: "running" })), {
      state: "running",
      portMap: { "22": 41022, "8080": 41080 },
      ip: "10.0.2.15",
      error: null,
    });
  });
});
