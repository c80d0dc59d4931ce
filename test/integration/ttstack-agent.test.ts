// TTstack's agent API on the daemon. Read side: /api/info reports this host's resources (what its VMs use),
// engines, storage and images under a stable id; /api/images lists images. VMs: made by name with their
// size, disk, forwarded ports (22 always, answered by the guest's SSH server with the given key), outbound
// traffic allowed or denied; listed, described, stopped and started with their disk and ports, rebooted,
// measured, deleted; bad bodies get 4xx JSON. Everything needs the token.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPortFree } from "../../src/net/host-ports.ts";
import type { AgentImage, AgentVm, AgentVmDetail, HostInfo, VmStats } from "../../src/protocol/ttstack-agent.ts";
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
      vcpu: 1
      ram_mb: 512
`;

describe("TTstack agent API", { timeout: 600_000 }, () => {
  let daemon: TestDaemon;
  let token: string;

  const call = async <T>(method: string, path: string, body?: unknown, withToken = true): Promise<{ status: number; body: T }> => {
    const headers: Record<string, string> = withToken ? { authorization: `Bearer ${token}` } : {};
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(`${daemon.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
  };
  const get = <T>(path: string, withToken = true): Promise<{ status: number; body: T }> => call<T>("GET", path, undefined, withToken);

  before(async () => {
    daemon = await TestDaemon.create(CONFIG);
    await daemon.start();
    token = readFileSync(join(daemon.stateDir, "auth", "token"), "utf8").trim();
  });

  after(async () => {
    await daemon.dispose();
  });

  test("/api/info: this host's resources in MiB, engines, storage and images", async () => {
    const { status, body: info } = await get<HostInfo>("/api/info");
    assert.equal(status, 200);
    assert.match(info.id, /^h-[0-9a-f]{12}$/);
    assert.equal(info.cpu_total, cpus().length);
    assert.equal(info.mem_total, Math.floor(totalmem() / 1024 / 1024));
    assert.ok(info.disk_total > 0 && info.disk_used > 0 && info.disk_used <= info.disk_total, JSON.stringify(info));
    assert.deepEqual([info.cpu_used, info.mem_used, info.vm_count], [0, 0, 0]);
    assert.deepEqual(info.engines, ["qemu"]);
    assert.equal(info.storage, "file");
    assert.ok(info.images.includes("base"));
  });

  test("a running VM counts in cpu_used, mem_used and vm_count; the id survives a restart", async () => {
    const before = (await get<HostInfo>("/api/info")).body;
    const node = await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "180s" });
    const during = (await get<HostInfo>("/api/info")).body;
    assert.deepEqual([during.cpu_used, during.mem_used, during.vm_count], [1, 512, 1]);
    await daemon.client.deleteNode("sbox", node.hostname);
    assert.equal((await get<HostInfo>("/api/info")).body.vm_count, 0);
    await daemon.stop();
    await daemon.start([], token);
    assert.equal((await get<HostInfo>("/api/info")).body.id, before.id);
  });

  test("/api/images: each image with its version and size", async () => {
    const { status, body } = await get<AgentImage[]>("/api/images");
    assert.equal(status, 200);
    const base = body.find((i) => i.name === "base");
    assert.ok(base, JSON.stringify(body));
    assert.match(base.version, /^[0-9a-f]{12}$/);
    assert.ok(base.size_mib > 0);
  });

  test("both need the token", async () => {
    for (const path of ["/api/info", "/api/images"]) {
      const { status, body } = await get<{ code: string }>(path, false);
      assert.equal(status, 401);
      assert.equal(body.code, "unauthorized");
    }
  });

  describe("VMs", () => {
    let key: SshKey;
    let publicKey: string;
    let vm: AgentVm;

      const guest = async (id: string, script: string): Promise<string> => (await daemon.client.execBuffered(id, { cmd: "sh", args: ["-c", script] })).stdout;
    const untilState = (id: string, state: string): Promise<AgentVm> =>
      until(async () => {
        const { body } = await get<AgentVm>(`/api/vms/${id}`);
        return body.state === state ? body : undefined;
      }, `VM ${id} to be ${state}`, 180_000, 250);

    before(async () => {
      key = await makeSshKey();
      publicKey = key.publicKey;
    });

    after(async () => {
      await key?.dispose();
    });

    test("POST /api/vms: 201 with a port map for 22 and the asked ports; ssh with the key; the disk has the asked size", async () => {
      const created = await call<AgentVm>("POST", "/api/vms", { vm_id: "env1-1", env_id: "env1", image: "base", cpu: 1, mem: 512, disk: 6144, ports: [8080], ssh_keys: [publicKey] });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      vm = created.body;
      assert.deepEqual([vm.id, vm.env_id, vm.hostgroup, vm.image, vm.engine, vm.cpu, vm.mem, vm.disk, vm.ports, vm.deny_outgoing], ["env1-1", "env1", "ttstack", "base", "qemu", 1, 512, 6144, [22, 8080], false]);
      const [sshPort, webPort] = [vm.port_map["22"], vm.port_map["8080"]];
      assert.ok(sshPort && webPort && sshPort !== webPort, JSON.stringify(vm.port_map));
      await untilState(vm.id, "running");
      assert.equal(await sshAsRoot(key, sshPort, "echo hello from $(hostname)"), "hello from env1-1\n");
      // The root filesystem grows to the disk's size in the background (the image's is 4 GiB).
      const size = await until(async () => {
        const mib = Number((await sshAsRoot(key, sshPort, "df -m / | tail -1 | awk '{print $2}'")).trim());
        return mib > 5500 ? mib : undefined;
      }, "the root filesystem to grow", 120_000, 1000);
      assert.ok(size <= 6144, `root filesystem of ${size} MiB`);
      // A guest port is reached through its host port.
      await guest(vm.id, "mkdir -p /tmp/www && echo served > /tmp/www/index.html && (httpd -p 8080 -h /tmp/www &)");
      const page = await until(async () => {
        try {
          return await (await fetch(`http://127.0.0.1:${webPort}/index.html`)).text();
        } catch {
          return undefined;
        }
      }, "the guest's web server", 30_000, 250);
      assert.equal(page, "served\n");
    });

    test("GET /api/vms lists every VM (filter by env_id); GET /api/vms/ID adds the hardware; stats", async () => {
      const sandbox = await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "180s" });
      try {
        const all = (await get<AgentVm[]>("/api/vms")).body;
        assert.deepEqual(all.map((v) => [v.id, v.hostgroup, v.env_id]).sort(), [["env1-1", "ttstack", "env1"], [sandbox.hostname, "sbox", null]].sort());
        assert.deepEqual((await get<AgentVm[]>("/api/vms?env_id=env1")).body.map((v) => v.id), ["env1-1"]);
        assert.deepEqual((await get<AgentVm[]>("/api/vms?env_id=other")).body, []);
        // Slicer's /hostgroup lists the TTstack group once it holds VMs (api-errors checks it is hidden before).
        const groups = (await get<{ name: string; count: number }[]>("/hostgroup")).body;
        assert.deepEqual(groups.map((g) => [g.name, g.count]), [["sbox", 1], ["ttstack", 1]]);
      } finally {
        await daemon.client.deleteNode("sbox", sandbox.hostname);
      }
      const detail = (await get<AgentVmDetail>("/api/vms/env1-1")).body;
      assert.equal(detail.hardware.disks[0]?.path, join(daemon.stateDir, "vms", "env1-1", "disk.qcow2"));
      assert.deepEqual(detail.hardware.disks[0]?.target, { dev: "vda", bus: "virtio" });
      assert.equal(detail.hardware.networks[0]?.mac.address, vm.mac);
      const stats = (await get<VmStats>("/api/vms/env1-1/stats")).body;
      assert.equal(stats.state, 1);
      assert.equal(stats.max_mem, 512 * 1024);
      assert.ok(stats.memory > 0 && stats.memory < stats.max_mem, JSON.stringify(stats));
      assert.ok(stats.cpu_time > 1e8, "QEMU has used CPU time");
      assert.ok((stats.net_stats[0]?.read_bytes ?? 0) > 0, JSON.stringify(stats.net_stats));
      assert.ok((stats.disk_stats[0]?.write_bytes ?? 0) > 0, JSON.stringify(stats.disk_stats));
      const info = (await get<HostInfo>("/api/info")).body;
      assert.deepEqual([info.cpu_used, info.mem_used, info.vm_count], [1, 512, 1]);
    });

    test("stop keeps the disk and the port map; start boots it again on them", async () => {
      await guest(vm.id, "echo kept > /root/mark; sync");
      const stopped = await call<AgentVm>("POST", "/api/vms/env1-1/stop");
      assert.equal(stopped.status, 200);
      assert.equal(stopped.body.state, "stopped");
      assert.equal((await get<HostInfo>("/api/info")).body.vm_count, 0);
      const started = await call<AgentVm>("POST", "/api/vms/env1-1/start");
      assert.equal(started.status, 200, JSON.stringify(started.body));
      assert.deepEqual(started.body.port_map, vm.port_map);
      await untilState(vm.id, "running");
      assert.equal(await sshAsRoot(key, vm.port_map["22"] as number, "cat /root/mark"), "kept\n");
      const again = await call<AgentVm>("POST", "/api/vms/env1-1/start");
      assert.equal(again.body.state, "running", "start of a running VM changes nothing");
    });

    test("reboot?force=true resets the machine", async () => {
      const bootId = await guest(vm.id, "cat /proc/sys/kernel/random/boot_id");
      const rebooted = await call<AgentVm>("POST", "/api/vms/env1-1/reboot?force=true");
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
      const denied = await call<AgentVm>("POST", "/api/vms", { vm_id: "env1-2", env_id: "env1", image: "base", cpu: 1, mem: 512, deny_outgoing: true, ssh_keys: [publicKey] });
      assert.equal(denied.status, 201, JSON.stringify(denied.body));
      assert.equal(denied.body.deny_outgoing, true);
      await untilState("env1-2", "running");
      assert.ok(!reached(await probe("env1-2")), "a VM with deny_outgoing does not");
      assert.equal(await sshAsRoot(key, denied.body.port_map["22"] as number, "echo in"), "in\n");
      assert.equal((await call("DELETE", "/api/vms/env1-2")).status, 204);
    });

    test("bad bodies and names: 4xx JSON naming the problem; nothing is made", async () => {
      const cases: [unknown, number, string, RegExp][] = [
        [{ vm_id: "x-1", image: "base", engine: "firecracker" }, 400, "unsupported_engine", /"firecracker" is not supported: this host runs "qemu"/],
        [{ vm_id: "x-1", image: "base", cpu: -1 }, 400, "invalid_request", /cpu/],
        [{ vm_id: "Bad_Name", image: "base" }, 400, "invalid_request", /vm_id/],
        [{ vm_id: "x-1" }, 400, "invalid_request", /image/],
        [{ vm_id: "x-1", image: "base", ports: [70000] }, 400, "invalid_request", /ports/],
        [{ vm_id: "x-1", image: "nope" }, 404, "image_not_found", /"nope"/],
        [{ vm_id: "x-1", image: "base", colour: "red" }, 400, "invalid_request", /colour/],
        [{ vm_id: "env1-1", image: "base" }, 409, "conflict", /"env1-1" already exists/],
      ];
      for (const [body, status, code, message] of cases) {
        const answer = await call<{ error: string; code: string }>("POST", "/api/vms", body);
        assert.equal(answer.status, status, JSON.stringify([body, answer.body]));
        assert.equal(answer.body.code, code, JSON.stringify(answer.body));
        assert.match(answer.body.error, message);
      }
      assert.deepEqual((await get<AgentVm[]>("/api/vms")).body.map((v) => v.id), ["env1-1"]);
      assert.equal((await get<{ code: string }>("/api/vms/nope-1")).body.code, "vm_not_found");
      assert.equal((await call("POST", "/api/vms", { vm_id: "x-2", image: "base" }, false)).status, 401);
    });

    test("DELETE /api/vms/ID: 204, the VM, its folder and its host ports are gone", async () => {
      assert.equal((await call("DELETE", "/api/vms/env1-1")).status, 204);
      assert.equal((await get("/api/vms/env1-1")).status, 404);
      assert.equal((await call("DELETE", "/api/vms/env1-1")).status, 404);
      for (const port of Object.values(vm.port_map)) assert.ok(await isPortFree("127.0.0.1", port), `port ${port} is free again`);
    });
  });
});