// TTstack's agent API on the daemon, the read side: /api/info reports this host's resources (what its VMs
// use), engines, storage and images under a stable id; /api/images lists images; both need the token.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { AgentImage, HostInfo } from "../../src/protocol/ttstack-agent.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";

const CONFIG = `config:
  api:
    auth:
      enabled: true
  host_groups:
    - name: sbox
      vcpu: 1
      ram_mb: 512
`;

describe("TTstack agent API (read side)", { timeout: 600_000 }, () => {
  let daemon: TestDaemon;
  let token: string;

  const get = async <T>(path: string, withToken = true): Promise<{ status: number; body: T }> => {
    const response = await fetch(`${daemon.url}${path}`, { headers: withToken ? { authorization: `Bearer ${token}` } : {} });
    return { status: response.status, body: (await response.json()) as T };
  };

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
});
