// Direction (b) of the fleet: Corral's controller registers and drives a TTstack agent. TTstack's agent is
// Rust and cannot be built here, so the host is a simulation of it (test/helpers/ttstack-agent-sim.ts) that
// answers as TTstack's agent code does; the controller is the real one. Registration tells the kind of host
// from what /api/info answers and keeps it; the controller's own key is sent to a host registered without a
// token (TTstack's shared key); TTstack's own example answers are read as they are; environments are made,
// stopped, started and deleted with the exact CreateVmReq TTstack's agent reads; what the agent cannot do is
// 501; a VM there that the controller does not know is left alone; a host that answers HTML, garbage, another
// shape or a 500 is a 502 naming it and what was wrong, and nothing is stored. All of it on SQLite and on
// a throwaway PostgreSQL (whose creates send their events with the placement's transaction).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Env, EnvDetail, Host } from "../../src/protocol/controller.ts";
import { serdeReadError } from "../fixtures/ttstack/contract.ts";
import { AGENT } from "../fixtures/ttstack/examples.ts";
import { TestController } from "../helpers/controller-process.ts";
import { freshPostgresDatabase, stopSharedPostgres } from "../helpers/postgres.ts";
import { TTstackAgentSim, type Misbehaviour } from "../helpers/ttstack-agent-sim.ts";
import { until } from "../helpers/until.ts";

for (const backend of ["SQLite", "PostgreSQL"] as const)
  describe(`Corral's controller over a TTstack agent (simulated), on ${backend}`, { timeout: 300_000 }, () => {
    let controller: TestController;
    let agent: TTstackAgentSim;
    const sims: TTstackAgentSim[] = [];
    const sim = async (options: ConstructorParameters<typeof TTstackAgentSim>[0] = {}): Promise<TTstackAgentSim> => {
      const started = await new TTstackAgentSim(options).start();
      sims.push(started);
      return started;
    };

    before(async () => {
      controller = await TestController.create();
      await controller.start(backend === "PostgreSQL" ? ["--database", await freshPostgresDatabase()] : []);
      agent = await sim({ apiKey: controller.apiKey });
    });

    after(async () => {
      await controller?.dispose();
      await Promise.all(sims.map((s) => s.stop()));
      if (backend === "PostgreSQL") await stopSharedPostgres();
    });

    test("registered by {addr} alone: the controller's key is sent (TTstack's shared key); it is kept as a TTstack agent", async () => {
      const added = await controller.call<Host>("POST", "/api/hosts", { addr: agent.addr });
      assert.equal(added.status, 201, JSON.stringify(added.raw));
      const host = added.body;
      assert.deepEqual([host.id, host.kind, host.state, host.engines, host.storage], [agent.hostId, "ttstack", "online", ["qemu", "docker"], "file"]);
      assert.deepEqual([host.resource.cpu_total, host.hostname], [16, "127.0.0.1"], "its resources; its address stands in for the hostname it does not report");
      assert.ok(
        agent.received.every((r) => r.auth === `Bearer ${controller.apiKey}`),
        "every call carries the controller's key",
      );

      const wrongKey = await sim({ apiKey: "another-key" });
      const refused = await controller.call<{ code: string; error: string }>("POST", "/api/hosts", { addr: wrongKey.addr });
      assert.deepEqual([refused.status, refused.body.code], [502, "host_unreachable"]);
      assert.match(refused.body.error, /refused GET \/api\/info: invalid or missing API key \(401 unauthorized\)/);
    });

    test("TTstack's own example answers (as its types serialize them) are read as they are", async () => {
      const example = await sim({ exampleAnswers: true, apiKey: controller.apiKey });
      const added = await controller.call<Host>("POST", "/api/hosts", { addr: example.addr });
      assert.equal(added.status, 201, JSON.stringify(added.raw));
      const expected = JSON.parse(AGENT.info) as { data: { resource: Host["resource"]; engines: string[] } };
      assert.deepEqual(
        [added.body.id, added.body.kind, added.body.resource, added.body.engines, added.body.images],
        [AGENT.hostId, "ttstack", expected.data.resource, expected.data.engines, ["alpine-cloud", "ubuntu-22.04"]],
      );
      assert.equal((await controller.call("DELETE", `/api/hosts/${AGENT.hostId}`)).status, 200);
    });

    test("an environment on it: TTstack's CreateVmReq for each VM, stop pauses, start resumes, delete removes", async () => {
      const created = await controller.call<EnvDetail>("POST", "/api/envs", {
        id: "Team_A.1",
        owner: "alice",
        vms: [
          { image: "base", ports: [8080] },
          { image: "base", cpu: 1, mem: 512, disk: 2048 },
        ],
      });
      assert.equal(created.status, 201, JSON.stringify(created.raw));
      const detail = created.body;
      assert.deepEqual([detail.env.id, detail.env.state, detail.env.status, detail.env.vm_ids.length], ["Team_A.1", "active", "running", 2]);
      assert.ok(
        detail.vms.every((vm) => /^team-a-1-[0-9a-f]{6}-\d$/.test(vm.id)),
        `VM ids are hostnames made from a TTstack name: ${detail.env.vm_ids.join(", ")}`,
      );
      assert.deepEqual(
        detail.vms.map((vm) => [vm.host_id, vm.state, vm.cpu, vm.mem, vm.disk, vm.ip.startsWith("10.10.0."), Object.keys(vm.port_map)]),
        [
          [agent.hostId, "running", 2, 1024, 40960, true, ["22", "8080"]],
          [agent.hostId, "running", 1, 512, 2048, true, ["22"]],
        ],
      );
      const creates = agent.received.filter((r) => r.route === "POST /api/vms");
      assert.equal(creates.length, 2);
      for (const create of creates) {
        const body = JSON.parse(create.body) as Record<string, unknown>;
        assert.equal(serdeReadError("CreateVmReq", body), undefined, create.body);
        assert.deepEqual(
          Object.keys(body),
          ["vm_id", "env_id", "image", "engine", "cpu", "mem", "disk", "ports", "deny_outgoing"],
          "TTstack's fields only, ssh_keys left out when there are none",
        );
      }

      assert.equal((await controller.call("POST", "/api/envs/Team_A.1/stop")).status, 200);
      assert.deepEqual(
        [...agent.vms.values()].map((vm) => vm.state),
        ["paused", "paused"],
        "TTstack's agent pauses a stopped qemu VM",
      );
      const stopped = (await controller.call<EnvDetail>("GET", "/api/envs/Team_A.1")).body;
      assert.deepEqual([stopped.env.state, ...stopped.vms.map((vm) => vm.state)], ["stopped", "paused", "paused"]);
      assert.equal((await controller.call("POST", "/api/envs/Team_A.1/start")).status, 200);
      assert.deepEqual(
        [...agent.vms.values()].map((vm) => vm.state),
        ["running", "running"],
      );

      // Virtumancer's reboot is not in TTstack's agent API.
      const reboot = await controller.call<{ code: string; error: string }>("POST", `/api/hosts/${agent.hostId}/vms/${detail.vms[0]?.id}/action`, { action: "reboot" });
      assert.deepEqual([reboot.status, reboot.body.code], [422, "unsupported_by_host"]);
      assert.match(reboot.body.error, /TTstack agent/);

      assert.equal((await controller.call("DELETE", "/api/envs/Team_A.1")).status, 200);
      assert.equal(agent.vms.size, 0);
    });

    test("GET /api/envs: the whole list without limit (as tt reads it); with limit, pages in order with next; bad pages are 400s", async () => {
      const ids = ["page-a", "page-b", "page-c", "page-d", "page-e"];
      for (const id of ids) assert.equal((await controller.call("POST", "/api/envs", { id, vms: [{ image: "base", cpu: 1, mem: 256, disk: 1024 }] })).status, 201);
      type Page = { ok: true; data: Env[]; next: string | null };
      // `raw`: the envelope itself (call() hands over `data`); call() also checks each answer against TTstack's types.
      const whole = (await controller.call("GET", "/api/envs")).raw as { ok: true; data: Env[]; next?: unknown };
      assert.equal("next" in whole, false, "the whole list is TTstack's envelope, nothing beside");
      const wholeIds = whole.data.map((env) => env.id);
      assert.deepEqual(
        wholeIds.filter((id) => ids.includes(id)),
        ids,
        "oldest first",
      );

      const paged: string[] = [];
      let after: string | null = null;
      let pages = 0;
      do {
        const query: string = after === null ? "limit=2" : `limit=2&after=${encodeURIComponent(after)}`;
        const answer = await controller.call("GET", `/api/envs?${query}`);
        assert.equal(answer.status, 200, JSON.stringify(answer.raw));
        const page = answer.raw as Page;
        assert.ok(page.data.length <= 2);
        paged.push(...page.data.map((env) => env.id));
        after = page.next;
        pages++;
      } while (after !== null);
      assert.deepEqual(paged, wholeIds, "the pages, one after another, are the whole list");
      assert.equal(pages, Math.ceil(wholeIds.length / 2));
      const sdkPaged: string[] = [];
      for await (const page of controller.client.envs.pages(3)) sdkPaged.push(...page.map((env) => env.id));
      assert.deepEqual(sdkPaged, wholeIds, "the SDK walks the pages");

      // A page's position stays good when the environment it ends on is deleted meanwhile.
      const first = (await controller.call("GET", `/api/envs?limit=${wholeIds.indexOf("page-b") + 1}`)).raw as Page;
      assert.equal(first.data.at(-1)?.id, "page-b");
      assert.equal((await controller.call("DELETE", "/api/envs/page-b")).status, 200);
      const rest = (await controller.call("GET", `/api/envs?limit=1000&after=${first.next}`)).raw as Page;
      assert.deepEqual(
        rest.data.map((env) => env.id).filter((id) => ids.includes(id)),
        ["page-c", "page-d", "page-e"],
      );
      assert.equal(rest.next, null);

      for (const [query, named] of [
        ["limit=0", /limit/],
        ["limit=1001", /limit/],
        ["limit=two", /limit/],
        ["limit=2&after=nonsense", /not a position this controller gave/],
        [`limit=2&after=${Buffer.from('["yesterday","x"]').toString("base64url")}`, /not a position/],
        [`after=${first.next}`, /without a page size/],
      ] as const) {
        const refused = await controller.call<{ ok: boolean; error: string; code: string }>("GET", `/api/envs?${query}`);
        assert.deepEqual([refused.status, refused.body.ok, refused.body.code], [400, false, "invalid_request"], query);
        assert.match(refused.body.error, named, query);
      }
      for (const id of ids.filter((id) => id !== "page-b")) assert.equal((await controller.call("DELETE", `/api/envs/${id}`)).status, 200);
    });

    test("a VM on the agent that the controller does not know is left alone, though its environment is unknown", async () => {
      // Another controller's VM (TTstack's own, say): an env_id the controller has no environment for.
      const foreign = await fetch(`http://${agent.addr}/api/vms`, {
        method: "POST",
        headers: { authorization: `Bearer ${controller.apiKey}`, "content-type": "application/json" },
        body: JSON.stringify({ vm_id: "3f2a6c1e-9b4", env_id: "theirs", image: "base", engine: "qemu", cpu: 1, mem: 256, disk: 1024, ports: [], deny_outgoing: false }),
      });
      assert.equal(foreign.status, 201);
      const before = agent.received.length;
      await until(() => (agent.received.slice(before).filter((r) => r.route === "GET /api/vms").length >= 3 ? true : undefined), "three heartbeats", 30_000);
      assert.ok(agent.vms.has("3f2a6c1e-9b4"), "not deleted as an orphan: nothing proves it is this fleet's");
      assert.ok(!agent.received.slice(before).some((r) => r.route.startsWith("DELETE")));
      agent.vms.clear();
    });

    test("a host answering what the controller cannot read: 502 naming the host and what was wrong; nothing is stored", async () => {
      const cases: [Misbehaviour, RegExp][] = [
        ["html", /not JSON: "<!doctype html>/],
        ["garbage", /not JSON/],
        ["empty", /no body/],
        ["bare-json", /not TTstack's envelope/],
        ["wrong-shape", /data\.resource/],
        ["server-error", /500.*database is locked/],
      ];
      for (const [misbehaviour, what] of cases) {
        const broken = await sim();
        broken.misbehave = misbehaviour;
        const answer = await controller.call<{ ok: boolean; code: string; error: string }>("POST", "/api/hosts", { id: `broken-${misbehaviour}`, addr: broken.addr });
        assert.equal(answer.status, 502, `${misbehaviour}: ${JSON.stringify(answer.raw)}`);
        assert.deepEqual([answer.body.ok, answer.body.code], [false, "host_bad_answer"], misbehaviour);
        assert.match(answer.body.error, new RegExp(`broken-${misbehaviour}`), "names the host");
        assert.match(answer.body.error, what, misbehaviour);
      }
      const hosts = (await controller.call<Host[]>("GET", "/api/hosts")).body;
      assert.deepEqual(
        hosts.map((h) => h.id),
        [agent.hostId],
        "no row for any of them",
      );
    });

    test("a registered host that starts answering garbage: an environment's create fails with 502, the host goes offline with why", async () => {
      agent.misbehave = "html";
      try {
        const created = await controller.call<{ code: string; error: string }>("POST", "/api/envs", { id: "doomed", owner: "bob", vms: [{ image: "base" }], lifetime: null });
        assert.equal(created.status, 502, JSON.stringify(created.raw));
        assert.equal(created.body.code, "host_bad_answer");
        assert.match(created.body.error, new RegExp(`Host "${agent.hostId}" answered POST /api/vms with something that is not JSON`));
        assert.equal((await controller.call("GET", "/api/envs/doomed")).status, 404, "the environment is not kept");
        const offline = await until(
          async () => {
            const host = (await controller.call<Host>("GET", `/api/hosts/${agent.hostId}`)).body;
            return host.state === "offline" ? host : undefined;
          },
          "the host to be offline",
          30_000,
        );
        assert.match(offline.last_error ?? "", /not JSON/);
      } finally {
        agent.misbehave = undefined;
      }
      await until(
        async () => ((await controller.call<Host>("GET", `/api/hosts/${agent.hostId}`)).body.state === "online" ? true : undefined),
        "the host to be online again",
        30_000,
      );
      assert.equal((await controller.call("DELETE", `/api/hosts/${agent.hostId}`)).status, 200);
    });
  });
