// TTstack's agent API on the daemon, every answer in TTstack's envelope and read the way TTstack's own types
// read it (test/fixtures/ttstack/contract.ts). Read side: /api/info reports this host's resources (what its
// VMs use), engines, storage and images under a stable id; /api/images lists images by name. VMs: made by
// name with their size, disk, forwarded ports (22 always, answered by the guest's SSH server with the given
// key), outbound traffic allowed or denied; listed, described, stopped and started with their disk and ports,
// rebooted, measured, deleted (200 {"ok":true}, an unknown one too, as TTstack's agent answers); bad bodies
// get a 4xx envelope. Everything needs the token. Then direction (a) of the fleet: the exact requests
// TTstack's controller sends its agents (a UUID-prefix id, every field, the shared key) drive a VM's life.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPortFree } from "../../src/net/host-ports.ts";
import type { AgentInfo as HostInfo, AgentVm, AgentVmDetail, VmStats } from "../../src/protocol/ttstack-agent.ts";
import { envelopeError, readLikeTt, type WireType } from "../fixtures/ttstack/contract.ts";
import { CTL } from "../fixtures/ttstack/examples.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";
import { OutsideHost } from "../helpers/outside-host.ts";
import { parseProbe, REACH_PROBE, reached, type ProbeResult } from "../helpers/reach.ts";
import { makeSshKey, sshAsRoot, type SshKey } from "../helpers/ssh.ts";
import { until } from "../helpers/until.ts";

const CONFIG = `config:
  api:
    auth:
      enabled: true
  host_groups:
    - name: sbox
      image: base
      vcpu: 1
      ram_mb: 512
`;

describe("TTstack agent API", { timeout: 600_000 }, () => {
  let daemon: TestDaemon;
  let token: string;

  /** Every answer must be TTstack's envelope of `type` as serde reads it; `body` is its data (or, for an error, the envelope). */
  const call = async <T>(method: string, path: string, body?: unknown, withToken = true, type: WireType = "()"): Promise<{ status: number; body: T; raw: unknown }> => {
    const headers: Record<string, string> = withToken ? { authorization: `Bearer ${token}` } : {};
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(`${daemon.url}${path}`, { method, headers, body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body) });
    const text = await response.text();
    const raw = JSON.parse(text) as { ok: boolean; data?: unknown };
    const wrong = envelopeError(response.ok ? type : "()", raw);
    assert.equal(wrong, undefined, `${method} ${path} (${response.status}): not ApiResp<${type}>: ${text.slice(0, 300)}`);
    return { status: response.status, body: (raw.ok ? raw.data : raw) as T, raw };
  };
  const get = <T>(path: string, type: WireType, withToken = true): Promise<{ status: number; body: T; raw: unknown }> => call<T>("GET", path, undefined, withToken, type);

  before(async () => {
    daemon = await TestDaemon.create(CONFIG);
    await daemon.start();
    token = readFileSync(join(daemon.stateDir, "auth", "token"), "utf8").trim();
  });

  after(async () => {
    await daemon.dispose();
  });

  test("/api/info: this host's resources in MiB, engines, storage and images", async () => {
    const { status, body: info } = await get<HostInfo>("/api/info", "AgentInfo");
    assert.equal(status, 200);
    assert.match(info.host_id, /^h-[0-9a-f]{12}$/);
    const r = info.resource;
    assert.equal(r.cpu_total, cpus().length);
    assert.equal(r.mem_total, Math.floor(totalmem() / 1024 / 1024));
    assert.ok(r.disk_total > 0 && r.disk_used > 0 && r.disk_used <= r.disk_total, JSON.stringify(info));
    assert.deepEqual([r.cpu_used, r.mem_used, r.vm_count], [0, 0, 0]);
    assert.deepEqual(info.engines, ["qemu"]);
    assert.equal(info.storage, "file");
    assert.ok(info.images.includes("base"));
    assert.ok(info.corral_version && info.hostname && info.threads_per_core >= 1, "Corral's fields beside TTstack's");
  });

  test("a running VM counts in cpu_used, mem_used and vm_count; the id survives a restart", async () => {
    const before = (await get<HostInfo>("/api/info", "AgentInfo")).body;
    const node = await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "180s" });
    const during = (await get<HostInfo>("/api/info", "AgentInfo")).body.resource;
    assert.deepEqual([during.cpu_used, during.mem_used, during.vm_count], [1, 512, 1]);
    await daemon.client.deleteNode("sbox", node.hostname);
    assert.equal((await get<HostInfo>("/api/info", "AgentInfo")).body.resource.vm_count, 0);
    await daemon.stop();
    await daemon.start([], token);
    assert.equal((await get<HostInfo>("/api/info", "AgentInfo")).body.host_id, before.host_id);
  });

  test("/api/images: the images by name, as TTstack's agent lists them", async () => {
    const { status, body } = await get<string[]>("/api/images", "String[]");
    assert.equal(status, 200);
    assert.ok(body.includes("base"), JSON.stringify(body));
  });

  test("everything needs the token: 401 in the envelope, an unknown /api/ path too", async () => {
    for (const path of ["/api/info", "/api/images", "/api/vms", "/api/nope"]) {
      const { status, body } = await get<{ ok: boolean; error: string; code: string }>(path, "()", false);
      assert.equal(status, 401);
      assert.deepEqual([body.ok, body.code], [false, "unauthorized"]);
    }
    const unknown = await get<{ code: string }>("/api/nope", "()");
    assert.deepEqual([unknown.status, unknown.body.code], [404, "not_found"]);
  });

  describe("VMs", () => {
    let key: SshKey;
    let publicKey: string;
    let vm: AgentVm;

    const guest = async (id: string, script: string): Promise<string> => (await daemon.client.execBuffered(id, { cmd: "sh", args: ["-c", script] })).stdout;
    const untilState = (id: string, state: string): Promise<AgentVm> =>
      until(
        async () => {
          const { body } = await get<AgentVm>(`/api/vms/${id}`, "Vm");
          return body.status === state ? body : undefined;
        },
        `VM ${id} to be ${state}`,
        180_000,
        250,
      );

    before(async () => {
      key = await makeSshKey();
      publicKey = key.publicKey;
    });

    after(async () => {
      await key?.dispose();
    });

    test("POST /api/vms: 201 with a port map for 22 and the asked ports; ssh with the key; the disk has the asked size", async () => {
      const created = await call<{ vm: AgentVm }>(
        "POST",
        "/api/vms",
        { vm_id: "env1-1", env_id: "env1", image: "base", cpu: 1, mem: 512, disk: 6144, ports: [8080], ssh_keys: [publicKey] },
        true,
        "CreateVmResp",
      );
      assert.equal(created.status, 201, JSON.stringify(created.body));
      vm = created.body.vm;
      assert.deepEqual(
        [vm.id, vm.env_id, vm.hostgroup, vm.image, vm.engine, vm.cpu, vm.mem, vm.disk, vm.ports, vm.deny_outgoing],
        ["env1-1", "env1", "ttstack", "base", "qemu", 1, 512, 6144, [22, 8080], false],
      );
      const info = (await get<HostInfo>("/api/info", "AgentInfo")).body;
      assert.equal(vm.host_id, info.host_id);
      assert.ok(Math.abs(vm.created_at - Date.now() / 1000) < 600, "created_at in Unix seconds");
      const [sshPort, webPort] = [vm.port_map["22"], vm.port_map["8080"]];
      assert.ok(sshPort && webPort && sshPort !== webPort, JSON.stringify(vm.port_map));
      await untilState(vm.id, "running");
      assert.equal(await sshAsRoot(key, sshPort, "echo hello from $(hostname)"), "hello from env1-1\n");
      // The root filesystem grows to the disk's size in the background (the image's is 4 GiB).
      const size = await until(
        async () => {
          const mib = Number((await sshAsRoot(key, sshPort, "df -m / | tail -1 | awk '{print $2}'")).trim());
          return mib > 5500 ? mib : undefined;
        },
        "the root filesystem to grow",
        120_000,
        1000,
      );
      assert.ok(size <= 6144, `root filesystem of ${size} MiB`);
      // A guest port is reached through its host port.
      await guest(vm.id, "mkdir -p /tmp/www && echo served > /tmp/www/index.html && (httpd -p 8080 -h /tmp/www &)");
      const page = await until(
        async () => {
          try {
            return await (await fetch(`http://127.0.0.1:${webPort}/index.html`)).text();
          } catch {
            return undefined;
          }
        },
        "the guest's web server",
        30_000,
        250,
      );
      assert.equal(page, "served\n");
    });

    test("GET /api/vms lists every VM (filter by env_id); GET /api/vms/ID adds the hardware; stats", async () => {
      const sandbox = await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "180s" });
      try {
        const all = (await get<AgentVm[]>("/api/vms", "Vm[]")).body;
        assert.deepEqual(
          all.map((v) => [v.id, v.hostgroup, v.env_id]).sort(),
          [
            ["env1-1", "ttstack", "env1"],
            [sandbox.hostname, "sbox", ""],
          ].sort(),
          'a VM made for no environment has env_id "" (TTstack\'s is a String)',
        );
        assert.deepEqual(
          (await get<AgentVm[]>("/api/vms?env_id=env1", "Vm[]")).body.map((v) => v.id),
          ["env1-1"],
        );
        assert.deepEqual((await get<AgentVm[]>("/api/vms?env_id=other", "Vm[]")).body, []);
        // Slicer's /hostgroup lists the TTstack group once it holds VMs (api-errors checks it is hidden before).
        const groups = (await (await fetch(`${daemon.url}/hostgroup`, { headers: { authorization: `Bearer ${token}` } })).json()) as { name: string; count: number }[];
        assert.deepEqual(
          groups.map((g) => [g.name, g.count]),
          [
            ["sbox", 1],
            ["ttstack", 1],
          ],
        );
      } finally {
        await daemon.client.deleteNode("sbox", sandbox.hostname);
      }
      const detail = (await get<AgentVmDetail>("/api/vms/env1-1", "Vm")).body;
      assert.equal(detail.hardware.disks[0]?.path, join(daemon.stateDir, "vms", "env1-1", "disk.qcow2"));
      assert.deepEqual(detail.hardware.disks[0]?.target, { dev: "vda", bus: "virtio" });
      assert.equal(detail.hardware.networks[0]?.mac.address, vm.mac);
      // Corral's own route beside TTstack's: its data is Corral's (Virtumancer's stats), in the same envelope.
      const statsAnswer = (await (await fetch(`${daemon.url}/api/vms/env1-1/stats`, { headers: { authorization: `Bearer ${token}` } })).json()) as { ok: boolean; data: VmStats };
      assert.equal(statsAnswer.ok, true);
      const stats = statsAnswer.data;
      assert.equal(stats.state, 1);
      assert.equal(stats.max_mem, 512 * 1024);
      assert.ok(stats.memory > 0 && stats.memory < stats.max_mem, JSON.stringify(stats));
      assert.ok(stats.cpu_time > 1e8, "QEMU has used CPU time");
      assert.ok((stats.net_stats[0]?.read_bytes ?? 0) > 0, JSON.stringify(stats.net_stats));
      assert.ok((stats.disk_stats[0]?.write_bytes ?? 0) > 0, JSON.stringify(stats.disk_stats));
      const info = (await get<HostInfo>("/api/info", "AgentInfo")).body.resource;
      assert.deepEqual([info.cpu_used, info.mem_used, info.vm_count], [1, 512, 1]);
    });

    test("stop keeps the disk and the port map; start boots it again on them", async () => {
      await guest(vm.id, "echo kept > /root/mark; sync");
      const stopped = await call("POST", "/api/vms/env1-1/stop");
      assert.deepEqual([stopped.status, stopped.raw], [200, { ok: true }]);
      assert.deepEqual([(await get<AgentVm>("/api/vms/env1-1", "Vm")).body.state, (await get<AgentVm>("/api/vms/env1-1", "Vm")).body.status], ["stopped", "stopped"]);
      assert.equal((await get<HostInfo>("/api/info", "AgentInfo")).body.resource.vm_count, 0);
      const started = await call("POST", "/api/vms/env1-1/start");
      assert.deepEqual([started.status, started.raw], [200, { ok: true }]);
      assert.deepEqual((await get<AgentVm>("/api/vms/env1-1", "Vm")).body.port_map, vm.port_map);
      await untilState(vm.id, "running");
      assert.equal(await sshAsRoot(key, vm.port_map["22"] as number, "cat /root/mark"), "kept\n");
      const again = await call("POST", "/api/vms/env1-1/start");
      assert.deepEqual([again.status, again.raw], [200, { ok: true }]);
      assert.equal((await get<AgentVm>("/api/vms/env1-1", "Vm")).body.status, "running", "start of a running VM changes nothing");
    });

    test("reboot?force=true resets the machine", async () => {
      const bootId = await guest(vm.id, "cat /proc/sys/kernel/random/boot_id");
      const rebooted = await call("POST", "/api/vms/env1-1/reboot?force=true");
      assert.equal(rebooted.status, 200, JSON.stringify(rebooted.body));
      await untilState(vm.id, "running");
      assert.notEqual(await guest(vm.id, "cat /proc/sys/kernel/random/boot_id"), bootId);
    });

    test("deny_outgoing: the guest cannot reach out, its forwarded ports still answer", async (t) => {
      // A machine beyond the host (the host itself is walled off from every guest: network.test.ts).
      const outside = await OutsideHost.create();
      t.after(() => outside.dispose());
      const probe = async (id: string): Promise<ProbeResult> =>
        parseProbe((await daemon.client.execBuffered(id, { cmd: "node", args: ["-e", REACH_PROBE, "tcp", outside.address, String(outside.port)] })).stdout);
      assert.deepEqual(await probe(vm.id), { outcome: "open", data: outside.greeting }, "a VM without deny_outgoing reaches out");
      const denied = await call<{ vm: AgentVm }>(
        "POST",
        "/api/vms",
        { vm_id: "env1-2", env_id: "env1", image: "base", cpu: 1, mem: 512, deny_outgoing: true, ssh_keys: [publicKey] },
        true,
        "CreateVmResp",
      );
      assert.equal(denied.status, 201, JSON.stringify(denied.body));
      assert.equal(denied.body.vm.deny_outgoing, true);
      await untilState("env1-2", "running");
      assert.ok(!reached(await probe("env1-2")), "a VM with deny_outgoing does not");
      assert.equal(await sshAsRoot(key, denied.body.vm.port_map["22"] as number, "echo in"), "in\n");
      assert.equal((await call("DELETE", "/api/vms/env1-2")).status, 200);
    });

    test("bad bodies and names: a 4xx envelope naming the problem; nothing is made", async () => {
      const cases: [unknown, number, string, RegExp][] = [
        [{ vm_id: "x-1", image: "base", engine: "firecracker" }, 400, "unsupported_engine", /"firecracker" is not supported: this host runs "qemu"/],
        [{ vm_id: "x-1", image: "base", cpu: -1 }, 400, "invalid_request", /cpu/],
        [{ vm_id: "x-1", image: "base", mem: null }, 400, "invalid_request", /mem/],
        [{ vm_id: "Bad_Name", image: "base" }, 400, "invalid_request", /vm_id/],
        [{ vm_id: "x-1" }, 400, "invalid_request", /image/],
        [{ vm_id: "x-1", image: "base", ports: [70000] }, 400, "invalid_request", /ports/],
        [{ vm_id: "x-1", image: "nope" }, 404, "image_not_found", /"nope"/],
        [{ vm_id: "env1-1", image: "base" }, 409, "conflict", /"env1-1" already exists/],
        ["{not json", 400, "invalid_json", /JSON/],
      ];
      for (const [body, status, code, message] of cases) {
        const answer = await call<{ ok: boolean; error: string; code: string }>("POST", "/api/vms", body);
        assert.equal(answer.status, status, JSON.stringify([body, answer.body]));
        assert.deepEqual([answer.body.ok, answer.body.code], [false, code], JSON.stringify(answer.body));
        assert.match(answer.body.error, message);
      }
      assert.deepEqual(
        (await get<AgentVm[]>("/api/vms", "Vm[]")).body.map((v) => v.id),
        ["env1-1"],
      );
      for (const path of ["/api/vms/nope-1", "/api/vms/Not_A_Hostname.1"]) {
        const missing = await get<{ code: string }>(path, "Vm");
        assert.deepEqual([missing.status, missing.body.code], [404, "vm_not_found"], path);
      }
      for (const action of ["stop", "start"]) assert.equal((await call<{ code: string }>("POST", `/api/vms/nope-1/${action}`)).body.code, "vm_not_found");
      assert.equal((await call("POST", "/api/vms", { vm_id: "x-2", image: "base" }, false)).status, 401);
    });

    test('DELETE /api/vms/ID: 200 {"ok":true}, the VM, its folder and its host ports are gone; again: 200 as well', async () => {
      const deleted = await call("DELETE", "/api/vms/env1-1");
      assert.deepEqual([deleted.status, deleted.raw], [200, { ok: true }]);
      assert.equal((await get("/api/vms/env1-1", "Vm")).status, 404);
      const again = await call("DELETE", "/api/vms/env1-1");
      assert.deepEqual([again.status, again.raw], [200, { ok: true }], "TTstack's agent deletes an unknown VM without complaint");
      for (const port of Object.values(vm.port_map)) assert.ok(await isPortFree("127.0.0.1", port), `port ${port} is free again`);
    });
  });

  describe("direction (a): TTstack's controller drives this daemon as one of its agents", () => {
    /** A request as tt-ctl's reqwest client sends it (crates/ctl/src/handler.rs:43-54): its key as a Bearer token, JSON only when there is a body. */
    const ctl = async (method: string, path: string, json?: string): Promise<{ status: number; body: unknown }> => {
      const headers: Record<string, string> = { authorization: `Bearer ${token}` };
      if (json !== undefined) headers["content-type"] = "application/json";
      const response = await fetch(`${daemon.url}${path}`, { method, headers, body: json });
      return { status: response.status, body: JSON.parse(await response.text()) as unknown };
    };
    /** What tt-ctl makes of a success it reads (`r.json::<ApiResp<T>>()` then `.data`): the data, or the test fails. */
    const dataOf = <T>(type: WireType, answer: { status: number; body: unknown }): T => {
      assert.ok(answer.status >= 200 && answer.status < 300, `a 2xx, got ${answer.status}: ${JSON.stringify(answer.body)}`);
      const read = readLikeTt<T>(type, answer.status, answer.body);
      assert.ok(read.ok, JSON.stringify(answer.body));
      return read.data;
    };

    test("register (/api/info), place (/api/images), create, refresh, stop, start, delete: every answer read as TTstack reads it", async () => {
      const info = dataOf<{ host_id: string; engines: string[]; resource: { cpu_total: number } }>("AgentInfo", await ctl("GET", "/api/info"));
      assert.ok(info.engines.includes("qemu") && info.resource.cpu_total > 0);
      assert.ok(dataOf<string[]>("String[]", await ctl("GET", "/api/images")).includes("base"), "the scheduler finds the image");

      const vmId = CTL.vmId();
      const body = CTL.createVm({ vm_id: vmId, env_id: "tt-env", image: "base", cpu: 1, mem: 512, disk: 4096, ports: [8080] });
      const created = await ctl("POST", "/api/vms", body);
      assert.equal(created.status, 201);
      const vm = dataOf<{ vm: { id: string; env_id: string; host_id: string; port_map: Record<string, number>; state: string } }>("CreateVmResp", created).vm;
      assert.deepEqual([vm.id, vm.env_id, vm.host_id], [vmId, "tt-env", info.host_id]);
      assert.deepEqual(Object.keys(vm.port_map), ["22", "8080"], "22 always, then the asked ports");

      // tt-ctl's refresh_vm (handler.rs:671-680): GET /api/vms/ID as ApiResp<Vm>.
      const refresh = async () => dataOf<{ state: string }>("Vm", await ctl("GET", `/api/vms/${vmId}`));
      await until(async () => ((await refresh()).state === "running" ? true : undefined), "the VM to run", 180_000, 250);

      const stop = await ctl("POST", `/api/vms/${vmId}/stop`);
      assert.equal(stop.status, 200);
      assert.equal((await refresh()).state, "stopped");
      const start = await ctl("POST", `/api/vms/${vmId}/start`);
      assert.equal(start.status, 200);
      await until(async () => ((await refresh()).state === "running" ? true : undefined), "the VM to run again", 180_000, 250);

      // Delete: tt-ctl looks only at the status (handler.rs:441-458); expiry retries it (main.rs:151-194).
      for (let attempt = 0; attempt < 2; attempt++) assert.equal((await ctl("DELETE", `/api/vms/${vmId}`)).status, 200);
      const gone = await ctl("GET", `/api/vms/${vmId}`);
      assert.equal(gone.status, 404);
      assert.deepEqual(readLikeTt("Vm", gone.status, gone.body).ok, false);
    });
  });
});
