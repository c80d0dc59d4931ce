// TTstack's own CLI, `tt`, against Corral's controller over a real daemon. `tt` is Rust and cannot be built
// here, so the test sends exactly the requests its code sends (crates/cli/src/main.rs, client.rs: the bodies
// as serde serializes them, `Authorization: Bearer KEY`, no body on stop and start) and reads every answer as
// its client does: TTstack's envelope first, then the type the command reads (test/fixtures/ttstack/). The
// daemon runs with auth and has the controller's key as its token: TTstack's shared key, since `tt host add`
// sends only an address. The sequence a new user runs: host add, env create with no SSH key, list, show, the
// VM, stop, start, status, images, delete, host remove. Then bad input on every TTstack route: a 4xx envelope.
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { readLikeTt, type WireType } from "../fixtures/ttstack/contract.ts";
import { TT } from "../fixtures/ttstack/examples.ts";
import { TestController } from "../helpers/controller-process.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";
import { until } from "../helpers/until.ts";

const DAEMON_CONFIG = `config:
  api:
    auth:
      enabled: true
  host_groups:
    - name: sbox
      image: base
      vcpu: 1
      ram_mb: 512
      template: false
`;

interface TtHost {
  id: string;
  addr: string;
  state: string;
  engines: string[];
  storage: string;
  resource: { cpu_total: number; cpu_used: number; mem_total: number; mem_used: number; disk_total: number; disk_used: number; vm_count: number };
}
interface TtVm {
  id: string;
  env_id: string;
  host_id: string;
  image: string;
  engine: string;
  cpu: number;
  mem: number;
  disk: number;
  ip: string;
  port_map: Record<string, number>;
  state: string;
  created_at: number;
}
interface TtEnv {
  id: string;
  owner: string;
  vm_ids: string[];
  created_at: number;
  expires_at: number;
  state: string;
}

describe("tt, TTstack's CLI, against Corral's controller and a real daemon", { timeout: 900_000 }, () => {
  let controller: TestController;
  let daemon: TestDaemon;
  let addr: string;

  /** One request as tt's reqwest client sends it; the answer as tt's client reads it (envelope, then data or error). */
  const tt = async <T>(
    type: WireType,
    method: string,
    path: string,
    json?: string,
  ): Promise<{ status: number; ok: true; data: T } | { status: number; ok: false; error: string }> => {
    const headers: Record<string, string> = { authorization: `Bearer ${controller.apiKey}` };
    if (json !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(`${controller.url}${path}`, { method, headers, body: json });
    const body = JSON.parse(await response.text()) as unknown;
    return { status: response.status, ...readLikeTt<T>(type, response.status, body) };
  };
  const ok = <T>(answer: { ok: true; data: T } | { ok: false; error: string }): T => {
    assert.ok(answer.ok, answer.ok ? "" : `tt would print "Error: ${answer.error}"`);
    return answer.data;
  };

  before(async () => {
    controller = await TestController.create();
    await controller.start();
    daemon = await TestDaemon.create(DAEMON_CONFIG);
    // TTstack's shared key: the daemon's token is the controller's key (its STATE_DIR/auth/token).
    await mkdir(join(daemon.stateDir, "auth"), { recursive: true, mode: 0o700 });
    await writeFile(join(daemon.stateDir, "auth", "token"), `${controller.apiKey}\n`, { mode: 0o600 });
    await daemon.start([], controller.apiKey);
    addr = new URL(daemon.url).host;
  });

  after(async () => {
    await controller?.dispose();
    await daemon?.dispose();
  });

  test("host add, env create with no key, list, show, vm, stop, start, status, images, delete, host remove", async () => {
    // tt host add ADDR (main.rs:283-292)
    const added = await tt<TtHost>("Host", "POST", "/api/hosts", TT.addHost(addr));
    assert.equal(added.status, 201);
    const host = ok(added);
    assert.deepEqual([host.addr, host.state, host.engines, host.storage], [addr, "online", ["qemu"], "file"]);
    assert.ok(host.resource.cpu_total > 0 && host.resource.mem_total > 0 && host.resource.disk_total > 0);
    // tt host list, tt host show ID
    assert.deepEqual(
      ok(await tt<TtHost[]>("Host[]", "GET", "/api/hosts")).map((h) => h.id),
      [host.id],
    );
    assert.equal(ok(await tt<TtHost>("Host", "GET", `/api/hosts/${host.id}`)).addr, addr);

    // tt env create tt-demo -i base (no --ssh-key; cpu, mem, disk and lifetime null: TTstack's defaults)
    const created = await tt<{ env: TtEnv; vms: TtVm[]; warnings?: string[] }>("EnvDetail", "POST", "/api/envs", TT.createEnvNoKey("tt-demo", "base", "alice"));
    assert.equal(created.status, 201);
    const detail = ok(created);
    assert.equal(detail.warnings, undefined, "no VM failed");
    assert.deepEqual([detail.env.id, detail.env.owner, detail.env.state, detail.env.vm_ids], ["tt-demo", "alice", "active", ["tt-demo-1"]]);
    assert.equal(detail.env.expires_at - detail.env.created_at, 21_600, "the default lifetime");
    const [vm] = detail.vms;
    assert.ok(vm);
    // What tt prints of each VM: id, engine, image, ip, port_map (main.rs:418-423).
    assert.deepEqual([vm.id, vm.engine, vm.image, vm.host_id, vm.cpu, vm.mem, vm.disk], ["tt-demo-1", "qemu", "base", host.id, 2, 1024, 40_960]);
    assert.ok(vm.ip.length > 0 && vm.port_map["22"], JSON.stringify(vm));

    // tt env list (main.rs:428-444): id, owner, state, vm_ids.len()
    const envs = ok(await tt<TtEnv[]>("Env[]", "GET", "/api/envs"));
    assert.deepEqual(
      envs.map((e) => [e.id, e.owner, e.state, e.vm_ids.length]),
      [["tt-demo", "alice", "active", 1]],
    );
    // tt env show tt-demo (main.rs:445-470), and the VM on its own (GET /api/vms/ID, crates/ctl/src/main.rs:82)
    const running = await until(
      async () => {
        const shown = ok(await tt<{ env: TtEnv; vms: TtVm[] }>("EnvDetail", "GET", "/api/envs/tt-demo"));
        return shown.vms[0]?.state === "running" ? shown : undefined;
      },
      "the VM to run",
      300_000,
      500,
    );
    assert.deepEqual(
      running.vms.map((v) => v.id),
      ["tt-demo-1"],
    );
    const single = ok(await tt<TtVm>("Vm", "GET", "/api/vms/tt-demo-1"));
    assert.deepEqual([single.id, single.env_id, single.state, single.port_map], ["tt-demo-1", "tt-demo", "running", vm.port_map]);

    // tt env stop / start: POST without a body, read as ApiResp<()> (main.rs:475-482)
    const stopped = await tt("()", "POST", "/api/envs/tt-demo/stop");
    assert.deepEqual([stopped.status, stopped.ok], [200, true]);
    const afterStop = ok(await tt<{ env: TtEnv; vms: TtVm[] }>("EnvDetail", "GET", "/api/envs/tt-demo"));
    assert.deepEqual([afterStop.env.state, afterStop.vms[0]?.state], ["stopped", "stopped"]);
    const started = await tt("()", "POST", "/api/envs/tt-demo/start");
    assert.deepEqual([started.status, started.ok], [200, true]);
    assert.equal(ok(await tt<{ env: TtEnv }>("EnvDetail", "GET", "/api/envs/tt-demo")).env.state, "active");

    // tt status (main.rs:269-279), tt image list (main.rs:489-499)
    const status = ok(await tt<Record<string, number>>("FleetStatus", "GET", "/api/status"));
    assert.deepEqual([status.hosts, status.hosts_online, status.total_vms, status.total_envs], [1, 1, 1, 1]);
    assert.ok((status.cpu_total ?? 0) > 0 && (status.mem_total ?? 0) > 0);
    const images = ok(await tt<{ name: string; host_id: string }[]>("ImageInfo[]", "GET", "/api/images"));
    assert.ok(
      images.some((i) => i.name === "base" && i.host_id === host.id),
      JSON.stringify(images),
    );

    // tt env delete, tt host remove: ApiResp<()> (main.rs:471-474, 338-341)
    const deleted = await tt("()", "DELETE", "/api/envs/tt-demo");
    assert.deepEqual([deleted.status, deleted.ok], [200, true]);
    const gone = await tt("EnvDetail", "GET", "/api/envs/tt-demo");
    assert.deepEqual([gone.status, gone.ok], [404, false]);
    const removed = await tt("()", "DELETE", `/api/hosts/${host.id}`);
    assert.deepEqual([removed.status, removed.ok], [200, true]);
    assert.deepEqual(ok(await tt<TtHost[]>("Host[]", "GET", "/api/hosts")), []);
  });

  test("bad input on every TTstack route: a 4xx envelope with ok false and the reason, as tt prints it", async () => {
    const cases: [WireType, string, string, string | undefined, number, RegExp][] = [
      ["Host", "POST", "/api/hosts", "{}", 400, /"addr".*"uri"/],
      ["Host", "POST", "/api/hosts", '{"addr": 5}', 400, /addr/],
      ["Host", "POST", "/api/hosts", '{"addr": "no-port"}', 400, /HOST:PORT/],
      ["Host", "POST", "/api/hosts", "{not json", 400, /JSON/],
      ["Host", "GET", "/api/hosts/nope", undefined, 404, /nope/],
      ["Host", "GET", "/api/hosts/bad%20id", undefined, 400, /id/],
      ["()", "DELETE", "/api/hosts/nope", undefined, 404, /nope/],
      ["EnvDetail", "POST", "/api/envs", "{}", 400, /id/],
      ["EnvDetail", "POST", "/api/envs", '{"id":"e1","owner":"a","vms":[{}]}', 400, /image/],
      ["EnvDetail", "POST", "/api/envs", '{"id":"e1","owner":"a","vms":[{"image":"base","cpu":0}]}', 400, /cpu/],
      ["EnvDetail", "POST", "/api/envs", '{"id":"e1","owner":"a","vms":[{"image":"base"}],"lifetime":-5}', 400, /lifetime/],
      ["EnvDetail", "POST", "/api/envs", '{"id":"e 1","owner":"a","vms":[{"image":"base"}]}', 400, /id/],
      ["EnvDetail", "POST", "/api/envs", '{"id":"e1","owner":"a","vms":[{"image":"base","engine":"vmware"}]}', 400, /"vmware"/],
      ["EnvDetail", "POST", "/api/envs", '{"id":"e1","owner":"a","vms":[{"image":"base"}]}', 422, /No host can take VM 1/],
      ["EnvDetail", "GET", "/api/envs/nope", undefined, 404, /nope/],
      ["EnvDetail", "GET", "/api/envs/a..b", undefined, 400, /id/],
      ["()", "DELETE", "/api/envs/nope", undefined, 404, /nope/],
      ["()", "POST", "/api/envs/nope/stop", undefined, 404, /nope/],
      ["()", "POST", "/api/envs/nope/start", undefined, 404, /nope/],
      ["Vm", "GET", "/api/vms/nope-1", undefined, 404, /nope-1/],
      ["()", "GET", "/api/nothing-here", undefined, 404, /No route/],
      ["EnvDetail", "POST", "/api/envs", `{"id":"${"x".repeat(2 * 1024 * 1024)}"}`, 413, /too large/],
    ];
    for (const [type, method, path, json, status, reason] of cases) {
      const answer = await tt(type, method, path, json);
      assert.equal(answer.status, status, `${method} ${path} ${json?.slice(0, 80) ?? ""}: ${JSON.stringify(answer).slice(0, 300)}`);
      assert.ok(!answer.ok, `${method} ${path}: ok false`);
      assert.match(answer.ok ? "" : answer.error, reason, `${method} ${path}`);
    }
    // Without the key: 401 in the envelope, on every route.
    for (const [method, path] of [
      ["GET", "/api/hosts"],
      ["POST", "/api/envs"],
      ["GET", "/api/status"],
      ["DELETE", "/api/envs/x"],
      ["GET", "/api/nothing-here"],
    ] as const) {
      const response = await fetch(`${controller.url}${path}`, { method });
      const read = readLikeTt("()", response.status, JSON.parse(await response.text()));
      assert.deepEqual([response.status, read.ok, read.ok ? "" : read.error], [401, false, "Missing or wrong API key: send Authorization: Bearer KEY"], `${method} ${path}`);
    }
  });
});
