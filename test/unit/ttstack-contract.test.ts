// The contract fixtures themselves (test/fixtures/ttstack/): TTstack's own example messages read as serde
// reads them, and the differences serde would refuse (a missing `ok`, an ISO timestamp, a state TTstack does
// not name, a `null` env_id, data on an answer read as `()`), so that the contract tests built on them can fail.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { envelopeError, readLikeTt, serdeReadError } from "../fixtures/ttstack/contract.ts";
import { AGENT, agentVmJson, CTL, EMPTY_OK, failure, success, TT } from "../fixtures/ttstack/examples.ts";

const parse = (text: string): unknown => JSON.parse(text);

describe("TTstack contract fixtures", () => {
  test("TTstack's own agent answers are what its types read", () => {
    assert.equal(envelopeError("AgentInfo", parse(AGENT.info)), undefined);
    assert.equal(envelopeError("String[]", parse(AGENT.images)), undefined);
    assert.equal(envelopeError("CreateVmResp", parse(success(`{"vm":${agentVmJson({ id: "3f2a6c1e-9b4", env_id: "e", host_id: AGENT.hostId })}}`))), undefined);
    assert.equal(envelopeError("Vm[]", parse(success(`[${agentVmJson({ id: "a", env_id: "e", host_id: "h", state: "paused" })}]`))), undefined);
    assert.equal(envelopeError("()", parse(EMPTY_OK)), undefined);
    assert.equal(envelopeError("Vm", parse(AGENT.vmNotFound("x"))), undefined);
    assert.equal(envelopeError("()", parse(AGENT.unauthorized)), undefined);
  });

  test("what tt and tt-ctl send is what TTstack's request types read", () => {
    assert.equal(serdeReadError("CreateEnvReq", parse(TT.createEnvNoKey("demo", "alpine-cloud"))), undefined);
    assert.equal(serdeReadError("CreateEnvReq", parse(TT.createEnvSized("demo", "alpine-cloud", "ssh-ed25519 AAAA k"))), undefined);
    assert.equal(serdeReadError("RegisterHostReq", parse(TT.addHost("10.0.0.2:9100"))), undefined);
    const id = CTL.vmId();
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{3}$/);
    assert.equal(serdeReadError("CreateVmReq", parse(CTL.createVm({ vm_id: id, env_id: "demo", image: "alpine-cloud" }))), undefined);
    assert.ok(!CTL.createVm({ vm_id: id, env_id: "demo", image: "x" }).includes("ssh_keys"), "no keys: the field is left out");
  });

  test("serde refuses what differs: the contract can fail", () => {
    assert.match(envelopeError("Host[]", [{ id: "h" }]) ?? "", /type|object/, "a bare list is not an envelope");
    assert.match(envelopeError("Host[]", { data: [] }) ?? "", /ok/, "missing field ok");
    const vm = parse(agentVmJson({ id: "a", env_id: "e", host_id: "h" })) as Record<string, unknown>;
    assert.match(serdeReadError("Vm", { ...vm, created_at: "2026-03-07T12:00:00Z" }) ?? "", /created_at/);
    assert.match(serdeReadError("Vm", { ...vm, state: "booting" }) ?? "", /state/);
    assert.match(serdeReadError("Vm", { ...vm, env_id: null }) ?? "", /env_id/);
    assert.match(serdeReadError("Vm", { ...vm, ip: null }) ?? "", /ip/);
    assert.match(serdeReadError("Vm", { ...vm, port_map: { ssh: 22 } }) ?? "", /port_map/);
    assert.match(serdeReadError("Vm", { ...vm, cpu: -1 }) ?? "", /cpu/);
    assert.equal(serdeReadError("Vm", { ...vm, status: "booting", health: "ok" }), undefined, "unknown fields are ignored");
    assert.match(envelopeError("()", { ok: true, data: { id: "e" } }) ?? "", /data/, "stop/start/delete answers read as () carry no data");
    assert.equal(envelopeError("()", { ok: true, data: null }), undefined);
    assert.match(serdeReadError("FleetStatus", { hosts: { total: 1 } }) ?? "", /hosts/);
    assert.match(serdeReadError("Env", { id: "e", owner: "o", vm_ids: [], created_at: 1, expires_at: 2, state: "running" }) ?? "", /state/);
  });

  test("tt's client: data on success, the error otherwise, 'empty response' without data", () => {
    assert.deepEqual(readLikeTt("String[]", 200, parse(AGENT.images)), { ok: true, data: ["alpine-cloud", "ubuntu-22.04"] });
    assert.deepEqual(readLikeTt("Vm", 404, parse(failure("VM not found: x"))), { ok: false, error: "VM not found: x" });
    assert.deepEqual(readLikeTt("Vm", 500, { ok: false }), { ok: false, error: "HTTP 500" });
    assert.throws(() => readLikeTt("Vm", 200, { ok: true }), /empty response/);
    assert.deepEqual(readLikeTt("()", 200, { ok: true }), { ok: true, data: undefined });
    assert.throws(() => readLikeTt("()", 204, ""), /cannot read/);
  });
});
