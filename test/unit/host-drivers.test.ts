// The controller's drivers to hosts (src/controller/drivers/), against small HTTP servers of this test: a TTstack
// agent's own example answers (test/fixtures/ttstack/examples.ts) are read into the controller's shapes; what
// the controller sends a TTstack agent is TTstack's CreateVmReq; every answer the controller cannot use is a
// `host_bad_answer` naming the host, the call and what was wrong; a refusal keeps the host's status, with the
// code its status implies when the host gave none.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { AgentApi } from "../../src/controller/drivers/agent-api.ts";
import { TTstackAgentDriver } from "../../src/controller/drivers/ttstack-agent-driver.ts";
import { HostDrivers } from "../../src/controller/host-driver.ts";
import { vmIdOf } from "../../src/controller/vm-ids.ts";
import { CorralError } from "../../src/protocol/errors.ts";
import { CorralApiError } from "../../src/sdk/transport.ts";
import { Type } from "@sinclair/typebox";
import { serdeReadError } from "../fixtures/ttstack/contract.ts";
import { AGENT, agentVmJson, EMPTY_OK, success } from "../fixtures/ttstack/examples.ts";

type Answer = { status: number; type?: string; body?: string };

describe("drivers to hosts", () => {
  let server: Server;
  let uri = "";
  const answers = new Map<string, Answer>();
  const received: { route: string; auth: string | undefined; body: string }[] = [];

  before(async () => {
    server = createServer(async (request, response) => {
      let body = "";
      for await (const chunk of request) body += String(chunk);
      const route = `${request.method} ${request.url}`;
      received.push({ route, auth: request.headers.authorization, body });
      const answer = answers.get(route) ?? { status: 404 };
      response.writeHead(answer.status, answer.body === undefined ? {} : { "content-type": answer.type ?? "application/json" }).end(answer.body);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    uri = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  test("TTstack's own answers are read into the controller's shapes", async () => {
    answers.set("GET /api/info", { status: 200, body: AGENT.info });
    const vm = agentVmJson({ id: "3f2a6c1e-9b4", env_id: "team", host_id: AGENT.hostId, ports: { "8080": 20101, "22": 20100 }, state: "paused", created_at: 1772892177 });
    answers.set("GET /api/vms", { status: 200, body: success(`[${vm},${agentVmJson({ id: "x", env_id: "", host_id: AGENT.hostId })}]`) });
    const driver = new TTstackAgentDriver("agent-1", { uri, token: "k" });
    try {
      const report = await driver.info();
      assert.deepEqual(report, {
        id: AGENT.hostId,
        hostname: "127.0.0.1",
        cpu_total: 16,
        cpu_used: 2,
        mem_total: 31785,
        mem_used: 1024,
        disk_total: 409600,
        disk_used: 40960,
        vm_count: 1,
        engines: ["qemu", "firecracker", "docker"],
        storage: "file",
        images: ["alpine-cloud", "ubuntu-22.04"],
      });
      const [first, second] = await driver.vms();
      assert.deepEqual(first, {
        id: "3f2a6c1e-9b4",
        env_id: "team",
        image: "alpine-cloud",
        engine: "qemu",
        cpu: 2,
        mem: 1024,
        disk: 40960,
        ports: [22, 8080],
        port_map: { "22": 20100, "8080": 20101 },
        state: "paused",
        ip: "10.10.0.2",
        created_at: "2026-03-07T14:02:57.000Z",
        last_error: null,
      });
      assert.equal(second?.env_id, null, 'TTstack\'s "" is no environment');
      assert.ok(received.every((r) => r.auth === "Bearer k"));
    } finally {
      await driver.close();
    }
  });

  test("a create sends TTstack's CreateVmReq (ssh_keys only when there are keys); stop and start read the VM again", async () => {
    const vm = agentVmJson({ id: "e-1", env_id: "e", host_id: AGENT.hostId });
    answers.set("POST /api/vms", { status: 201, body: success(`{"vm":${vm}}`) });
    answers.set("POST /api/vms/e-1/stop", { status: 200, body: EMPTY_OK });
    answers.set("GET /api/vms/e-1", { status: 200, body: success(agentVmJson({ id: "e-1", env_id: "e", host_id: AGENT.hostId, state: "paused" })) });
    const driver = new TTstackAgentDriver("agent-1", { uri, token: undefined });
    try {
      received.length = 0;
      await driver.createVm({
        vm_id: "e-1",
        env_id: "e",
        image: "base",
        engine: "qemu",
        cpu: 2,
        mem: 1024,
        disk: 40960,
        ports: [],
        deny_outgoing: false,
        ssh_keys: [],
        fleet_id: "f",
      });
      const sent = JSON.parse(received[0]?.body ?? "{}") as Record<string, unknown>;
      assert.equal(serdeReadError("CreateVmReq", sent), undefined);
      assert.deepEqual(Object.keys(sent), ["vm_id", "env_id", "image", "engine", "cpu", "mem", "disk", "ports", "deny_outgoing"]);
      assert.equal(received[0]?.auth, undefined, "no token, no header");
      assert.equal((await driver.stopVm("e-1", { force: true })).state, "paused");
      assert.deepEqual(
        received.map((r) => r.route),
        ["POST /api/vms", "POST /api/vms/e-1/stop", "GET /api/vms/e-1"],
        "no ?force: TTstack's agent has none",
      );
      await assert.rejects(driver.rebootVm("e-1"), (err: unknown) => err instanceof CorralError && err.code === "unsupported_by_host" && err.status === 422);
      await assert.rejects(driver.stats("e-1"), (err: unknown) => err instanceof CorralError && err.code === "unsupported_by_host");
    } finally {
      await driver.close();
    }
  });

  test("what the controller cannot use is host_bad_answer naming the host, the call and what was wrong", async () => {
    const api = new AgentApi("h9", { uri, token: undefined }, 5000);
    const shape = Type.Object({ host_id: Type.String(), resource: Type.Object({ cpu_total: Type.Integer() }) });
    const cases: [Answer, RegExp][] = [
      [{ status: 200, type: "text/html", body: "<html><body>nginx</body></html>" }, /answered GET \/api\/info with something that is not JSON: "<html>/],
      [{ status: 200, body: "" }, /200 and no body/],
      [{ status: 200, body: '[{"host_id":"h"}]' }, /not TTstack's envelope/],
      [{ status: 200, body: '{"host_id":"h","resource":{}}' }, /not TTstack's envelope/],
      [{ status: 200, body: '{"ok":true}' }, /no data/],
      [{ status: 200, body: '{"ok":false,"error":"db locked"}' }, /says it failed: db locked/],
      [{ status: 200, body: '{"ok":true,"data":{"host_id":"h","resource":{"cpu_total":"many"}}}' }, /data\.resource\.cpu_total that must be integer, got "many"/],
      [{ status: 200, body: '{"ok":true,"data":{"resource":{"cpu_total":1}}}' }, /data\.host_id missing/],
    ];
    try {
      for (const [answer, what] of cases) {
        answers.set("GET /api/info", answer);
        await assert.rejects(api.data("GET", "/api/info", shape), (err: unknown) => {
          assert.ok(err instanceof CorralError, String(err));
          assert.deepEqual([err.code, err.status], ["host_bad_answer", 502]);
          assert.match(err.message, /^Host "h9" answered GET \/api\/info with /);
          assert.match(err.message, what);
          return true;
        });
      }
    } finally {
      await api.close();
    }
  });

  test("a refusal keeps the host's status and message; its code is the host's, or the one its status implies", async () => {
    const api = new AgentApi("h9", { uri, token: undefined }, 5000);
    const cases: [Answer, number, string, RegExp][] = [
      [{ status: 404, body: AGENT.vmNotFound("x-1") }, 404, "vm_not_found", /VM not found: x-1/],
      [{ status: 401, body: AGENT.unauthorized }, 401, "unauthorized", /invalid or missing API key/],
      [{ status: 422, type: "text/plain", body: "Failed to deserialize the JSON body" }, 422, "invalid_request", /Failed to deserialize/],
      [{ status: 409, body: '{"ok":false,"error":"taken","code":"conflict"}' }, 409, "conflict", /taken/],
      [{ status: 500, body: AGENT.createFailed }, 500, "unknown", /insufficient resources/],
    ];
    try {
      for (const [answer, status, code, message] of cases) {
        answers.set("GET /api/vms/x-1", answer);
        await assert.rejects(api.data("GET", "/api/vms/x-1", Type.Object({})), (err: unknown) => {
          assert.ok(err instanceof CorralApiError, String(err));
          assert.deepEqual([err.status, err.code], [status, code]);
          assert.match(err.message, message);
          return true;
        });
      }
    } finally {
      await api.close();
    }
  });

  test("probe: a Corral daemon says corral_version in /api/info, a TTstack agent does not", async () => {
    const drivers = new HostDrivers({ sharedKey: "ctl-key" });
    answers.set("GET /api/info", { status: 200, body: AGENT.info });
    received.length = 0;
    assert.equal(await drivers.probe("x", { uri, token: null }), "ttstack");
    assert.equal(received[0]?.auth, "Bearer ctl-key", "without a token of its own, the controller's key");
    answers.set("GET /api/info", { status: 200, body: success(`{"host_id":"h-1","corral_version":"0.1.0"}`) });
    assert.equal(await drivers.probe("x", { uri, token: "own" }), "corral");
    assert.equal(received[1]?.auth, "Bearer own");
    await drivers.closeAll();
  });
});

describe("VM ids from TTstack's environment names", () => {
  test("a short DNS label: ENV-N; anything else: a DNS label made from it, with a hash of the whole name", () => {
    assert.equal(vmIdOf("team", 1), "team-1");
    assert.equal(vmIdOf("a".repeat(59), 64), `${"a".repeat(59)}-64`);
    const made = ["Team_A", "team_a", "team.a", "team-a-", "-x", "a".repeat(128), "UPPER", "a.b_c-d"].map((id) => vmIdOf(id, 12));
    for (const id of made) assert.match(id, /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, id);
    assert.equal(new Set(made).size, made.length, `no two alike: ${made.join(" ")}`);
    assert.equal(vmIdOf("Team_A", 1), vmIdOf("Team_A", 1), "the same name, the same id");
    assert.match(vmIdOf("Team_A", 1), /^team-a-[0-9a-f]{6}-1$/);
  });
});
