// The controller's /metrics over a real daemon: after a placement (and one refused for want of room) and
// heartbeats, a scrape with the API key parses as strict Prometheus text and its numbers match the fleet
// as the API shows it (hosts by kind and state, environments and VMs by state, placements, heartbeats per
// host kind, HTTP latencies by route pattern, never by raw URL); without the key it is a 401. And the OpenAPI
// documents of both servers list the lifecycle vocabularies' values where they say a state.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { EnvDetail, FleetStatus, Host } from "../../src/protocol/controller.ts";
import { ENV_STATES } from "../../src/protocol/env-lifecycle.ts";
import { FLEET_VM_STATES, VM_STATES } from "../../src/protocol/vm-states.ts";
import { TestController } from "../helpers/controller-process.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";
import { parsePrometheusText, samples, sampleValue, type MetricFamily } from "../helpers/prometheus-text.ts";
import { until } from "../helpers/until.ts";

const DAEMON_CONFIG = `config:
  host_groups:
    - name: sbox
      image: base
      vcpu: 1
      ram_mb: 512
      template: false
`;

type Families = Map<string, MetricFamily>;

describe("the controller's /metrics", { timeout: 600_000 }, () => {
  let daemon: TestDaemon;
  let controller: TestController;
  let host: Host;

  const scrape = async (key: string | null = controller.apiKey): Promise<Response> =>
    fetch(`${controller.url}/metrics`, { headers: key === null ? {} : { authorization: `Bearer ${key}` } });
  const metrics = async (): Promise<Families> => {
    const response = await scrape();
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    return parsePrometheusText(await response.text());
  };

  before(async () => {
    daemon = await TestDaemon.create(DAEMON_CONFIG);
    await daemon.start();
    controller = await TestController.create();
    await controller.start();
    const registered = await controller.call<Host>("POST", "/api/hosts", { addr: new URL(daemon.url).host });
    assert.equal(registered.status, 201, JSON.stringify(registered.body));
    host = registered.body;
  });

  after(async () => {
    await controller?.call("DELETE", "/api/envs/watched").catch(() => undefined);
    await controller?.dispose();
    await daemon?.dispose();
  });

  test("401 without the API key or with another; the route is not in the OpenAPI document", async () => {
    for (const key of [null, "wrong-key-0123456789"]) {
      const response = await scrape(key);
      assert.equal(response.status, 401);
      const body = (await response.json()) as { code: string };
      assert.equal(body.code, "unauthorized");
    }
  });

  test("after a placement and heartbeats, the numbers match the fleet", async () => {
    const created = await controller.call<EnvDetail>("POST", "/api/envs", { id: "watched", vms: [{ image: "base", cpu: 1, mem: 512, disk: 4096 }] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const refused = await controller.call<{ code: string }>("POST", "/api/envs", { id: "too-big", vms: [{ image: "base", cpu: 1, mem: 1024 * 1024, disk: 4096 }] });
    assert.equal(refused.raw && (refused.raw as { code?: string }).code, "no_capacity", JSON.stringify(refused.raw));
    const detail = await until(
      async () => {
        const current = (await controller.call<EnvDetail>("GET", "/api/envs/watched")).body;
        return current.env.status === "running" && current.vms.every((vm) => vm.status === "running") ? current : undefined;
      },
      "the environment's VM to run",
      240_000,
      500,
    );
    // A heartbeat after the create: the host has answered at least once more than at registration.
    const answered = (families: Families): number =>
      sampleValue(families, "corral_controller_heartbeat_duration_seconds", { kind: "corral", outcome: "answered" }, "corral_controller_heartbeat_duration_seconds_count");
    const before = answered(await metrics());
    await until(async () => answered(await metrics()) > before || undefined, "a heartbeat to be timed", 60_000, 250);
    // Calls whose latency must show under their route's pattern, never their URL.
    for (let i = 0; i < 3; i++) assert.equal((await controller.call("GET", "/api/envs/watched")).status, 200);
    assert.equal((await controller.call("GET", "/api/envs/no-such-env")).status, 404);
    // The dashboard's GET /* takes any other GET: a POST nowhere is what no route matches.
    assert.equal((await controller.call("POST", "/no/such/route/x9", {})).status, 404);

    const families = await metrics();
    const status = (await controller.call<FleetStatus>("GET", "/api/status")).body;

    // Hosts by kind and state: every kind and state has a series, one host is an online Corral daemon.
    for (const kind of ["corral", "ttstack", "libvirt"]) {
      for (const state of ["online", "offline", "disconnected"]) {
        const expected = kind === "corral" && state === "online" ? 1 : 0;
        assert.equal(sampleValue(families, "corral_controller_hosts", { kind, state }), expected, `${kind}/${state}`);
      }
    }
    assert.equal(status.hosts_online, 1);
    assert.equal(host.kind, "corral");

    // Environments and VMs by state, every state of each vocabulary present.
    assert.deepEqual(
      samples(families, "corral_controller_envs")
        .map((s) => s.labels.state)
        .sort(),
      [...ENV_STATES].sort(),
    );
    for (const state of ENV_STATES) assert.equal(sampleValue(families, "corral_controller_envs", { state }), state === detail.env.status ? 1 : 0, `envs ${state}`);
    assert.deepEqual(
      samples(families, "corral_controller_vms")
        .map((s) => s.labels.state)
        .sort(),
      [...FLEET_VM_STATES].sort(),
    );
    const vmTotal = samples(families, "corral_controller_vms").reduce((sum, s) => sum + s.value, 0);
    assert.equal(vmTotal, status.total_vms);
    assert.equal(sampleValue(families, "corral_controller_vms", { state: "running" }), status.vms_running);
    assert.equal(sampleValue(families, "corral_controller_vms", { state: "running" }), detail.vms.length);

    // Placements: one placed, one refused for want of room; each timed.
    assert.equal(sampleValue(families, "corral_controller_placements_total", { outcome: "placed" }), 1);
    assert.equal(sampleValue(families, "corral_controller_placements_total", { outcome: "no_capacity" }), 1);
    assert.equal(sampleValue(families, "corral_controller_placement_duration_seconds", {}, "corral_controller_placement_duration_seconds_count"), 2);
    assert.ok(sampleValue(families, "corral_controller_placement_duration_seconds", {}, "corral_controller_placement_duration_seconds_sum") > 0);

    // Heartbeats per host kind: only a Corral daemon was asked, and it answered.
    const heartbeats = samples(families, "corral_controller_heartbeat_duration_seconds", {}, "corral_controller_heartbeat_duration_seconds_count");
    assert.deepEqual(
      heartbeats.map((s) => [s.labels.kind, s.labels.outcome]),
      [["corral", "answered"]],
    );
    assert.ok((heartbeats[0]?.value ?? 0) >= 2, "registration's heartbeat and at least one of the loop's");

    // HTTP latencies by the matched route's pattern, method and status class.
    const http = (labels: Record<string, string>): number =>
      sampleValue(families, "corral_controller_http_request_duration_seconds", labels, "corral_controller_http_request_duration_seconds_count");
    assert.ok(http({ route: "/api/envs/:id", method: "GET", status_class: "2xx" }) >= 4, "the GETs of the environment (and the polling)");
    assert.equal(http({ route: "/api/envs/:id", method: "GET", status_class: "4xx" }), 1);
    assert.equal(http({ route: "/api/envs", method: "POST", status_class: "2xx" }), 1);
    assert.equal(http({ route: "/api/envs", method: "POST", status_class: "4xx" }), 1);
    assert.equal(http({ route: "unmatched", method: "POST", status_class: "4xx" }), 1);
    const routes = new Set(
      samples(families, "corral_controller_http_request_duration_seconds", {}, "corral_controller_http_request_duration_seconds_count").map((s) => s.labels.route ?? ""),
    );
    for (const raw of ["watched", "no-such-env", "x9"])
      assert.ok(![...routes].some((route) => route.includes(raw)), `no route label holds the URL's ${JSON.stringify(raw)}: ${[...routes].join(", ")}`);

    // The event loop's lag, among Node's own metrics.
    assert.ok(sampleValue(families, "nodejs_eventloop_lag_seconds") >= 0);
  });

  test("the OpenAPI documents list the lifecycle vocabularies where a state is said", async () => {
    const controllerDoc = (await controller.call<OpenApi>("GET", "/openapi.json")).body;
    assert.equal(controllerDoc.paths["/metrics"], undefined, "/metrics is hidden from the API document");
    const envDetail = responseSchema(controllerDoc, "/api/envs/{id}", "get");
    assert.deepEqual(propertyAt(envDetail, ["data", "env", "status"]).enum, [...ENV_STATES]);
    assert.deepEqual(propertyAt(envDetail, ["data", "vms", "[]", "status"]).enum, [...FLEET_VM_STATES]);
    const hostVms = responseSchema(controllerDoc, "/api/hosts/{id}/vms", "get");
    assert.deepEqual(propertyAt(hostVms, ["[]", "status"]).enum, [...VM_STATES]);
    const v1Vms = responseSchema(controllerDoc, "/api/v1/hosts/{id}/vms", "get");
    assert.deepEqual(propertyAt(v1Vms, ["[]", "status"]).enum, [...VM_STATES]);

    const daemonDoc = (await (await fetch(`${daemon.url}/openapi.json`)).json()) as OpenApi;
    const agentVms = responseSchema(daemonDoc, "/api/vms", "get");
    assert.deepEqual(propertyAt(agentVms, ["data", "[]", "status"]).enum, [...VM_STATES]);
  });
});

interface JsonSchema {
  type?: string;
  enum?: string[];
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
}

interface OpenApi {
  paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: JsonSchema }> }> }>>;
}

function responseSchema(doc: OpenApi, path: string, method: string): JsonSchema {
  const schema = doc.paths[path]?.[method]?.responses["200"]?.content?.["application/json"]?.schema;
  assert.ok(schema, `${method.toUpperCase()} ${path} has a 200 JSON schema in the OpenAPI document (paths: ${Object.keys(doc.paths).join(", ")})`);
  return schema;
}

/** The schema at `steps` ("[]": an array's items). */
function propertyAt(schema: JsonSchema, steps: readonly string[]): JsonSchema {
  let at = schema;
  for (const step of steps) {
    const next = step === "[]" ? at.items : at.properties?.[step];
    assert.ok(next, `no ${step} in ${JSON.stringify(at).slice(0, 300)}`);
    at = next;
  }
  return at;
}
