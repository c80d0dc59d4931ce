import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { createBody, envDetails, envRows, parseAuthorizedKeys, parseLifetime, parseVmSpec, vmAccess } from "../../src/cli/env-commands.ts";
import { DEFAULT_CONTROLLER_URL, resolveFleetConnection } from "../../src/cli/fleet-connection.ts";
import { formatSpan, hostDetails, hostRows, hostVmRows, registerBody } from "../../src/cli/host-commands.ts";
import { capacityRows, percent, statusSummary } from "../../src/cli/status-command.ts";
import { controllerInfoFile, readControllerInfo, writeControllerInfo } from "../../src/controller/runtime-info.ts";
import { ControllerClient, CorralApiError, type Env, type EnvDetail, type FleetStatus, type FleetVm, type Host } from "../../src/sdk/index.ts";

const dir = await mkdtemp(join(tmpdir(), "corral-fleet-cli-test-"));
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const NOW = Date.parse("2025-01-01T12:00:00Z");
/** Unix seconds, as TTstack's answers give times. */
const unix = (iso: string): number => Date.parse(iso) / 1000;
const GiB = 1024;

function rejectsSpec(spec: string, problem: string): void {
  assert.throws(() => parseVmSpec(spec), { message: `--vm ${JSON.stringify(spec)}: ${problem}` });
}

describe("--vm specs", () => {
  test("every field, mem and disk in MiB or as sizes, ports split by + or ;", () => {
    assert.deepEqual(parseVmSpec("image=base,cpu=2,mem=1024,disk=40960,ports=80+443,engine=qemu,deny_outgoing"), {
      image: "base",
      cpu: 2,
      mem: 1024,
      disk: 40960,
      ports: [80, 443],
      engine: "qemu",
      deny_outgoing: true,
    });
    assert.deepEqual(parseVmSpec("image=alpine-cloud, mem=2G, disk=40GiB, ports=22;8080"), { image: "alpine-cloud", mem: 2048, disk: 40960, ports: [22, 8080] });
    assert.deepEqual(parseVmSpec("image=base,mem=1.5G"), { image: "base", mem: 1536 });
    assert.deepEqual(parseVmSpec("image=base,deny_outgoing=false"), { image: "base", deny_outgoing: false });
    assert.deepEqual(parseVmSpec("image=base"), { image: "base" }, "the rest defaults on the controller");
  });

  test("bad specs say which field and why", () => {
    rejectsSpec("image=base,cpu=two", "cpu must be a whole number");
    rejectsSpec("image=base,cpu=0", "cpu must be from 1 to 64, got 0");
    rejectsSpec("image=base,cpu=2.5", "cpu must be a whole number");
    rejectsSpec("cpu=2", "image is required, e.g. image=base");
    rejectsSpec("", "image is required, e.g. image=base");
    rejectsSpec("image=Bad!", 'image "Bad!" is not an image name (lower-case letters, digits, ".", "_" and "-")');
    rejectsSpec("image=base,mem=64", "mem must be from 128 to 1048576 MiB, got 64");
    rejectsSpec("image=base,mem=lots", "mem must be a whole number of MiB, or a size such as 2G");
    rejectsSpec("image=base,disk=512", "disk must be from 1024 to 67108864 MiB, got 512");
    rejectsSpec("image=base,ports=80,443", 'separate ports with "+" or ";" (commas separate fields), got "443"');
    rejectsSpec("image=base,ports=80+80", "ports lists 80 twice");
    rejectsSpec("image=base,ports=70000", "each port must be from 1 to 65535, got 70000");
    rejectsSpec("image=base,ports=", "ports needs a value (ports=…)");
    rejectsSpec("image=base,cpu", "cpu needs a value (cpu=…)");
    rejectsSpec("base", 'expected NAME=VALUE, got "base"');
    rejectsSpec("image=base,gpu=1", 'unknown field "gpu" (fields: image, engine, cpu, mem, disk, ports, deny_outgoing)');
    rejectsSpec("image=base,cpu=1,cpu=2", "cpu is given twice");
    rejectsSpec("image=base,deny_outgoing=maybe", 'deny_outgoing must be true or false, got "maybe"');
  });
});

describe("--lifetime", () => {
  test("seconds or durations, in whole seconds", () => {
    assert.equal(parseLifetime("3600"), 3600);
    assert.equal(parseLifetime("6h"), 21_600);
    assert.equal(parseLifetime("90m"), 5400);
    assert.equal(parseLifetime("1d12h"), 129_600);
    assert.equal(parseLifetime("1h30m15s"), 5415);
    assert.equal(parseLifetime("1.5h"), 5400);
    assert.equal(parseLifetime("30d"), 30 * 86_400);
  });

  test("anything else is refused with what to write", () => {
    const usage = (text: string): string => `Invalid --lifetime ${JSON.stringify(text)}: use seconds or a duration such as 6h, 90m or 2d`;
    for (const text of ["", "six hours", "6 h", "-5", "1w", "h"]) assert.throws(() => parseLifetime(text), { message: usage(text) });
    assert.throws(() => parseLifetime("0"), { message: 'Invalid --lifetime "0": it must be at least 1s' });
    assert.throws(() => parseLifetime("31d"), { message: 'Invalid --lifetime "31d": the longest allowed is 30d' });
  });
});

describe("env create body", () => {
  test("keys come from authorized_keys files, comments and blank lines skipped", async () => {
    const file = join(dir, "keys.pub");
    await writeFile(file, "# laptop\nssh-ed25519 AAAA1 alice@laptop\n\nssh-rsa AAAA2 alice@desk\n");
    assert.deepEqual(createBody("my-env", { vm: ["image=base", "image=base,cpu=4"], sshKey: [file], owner: "alice", lifetime: "2h" }), {
      id: "my-env",
      owner: "alice",
      ssh_keys: ["ssh-ed25519 AAAA1 alice@laptop", "ssh-rsa AAAA2 alice@desk"],
      vms: [{ image: "base" }, { image: "base", cpu: 4 }],
      lifetime: 7200,
    });
    assert.throws(() => parseAuthorizedKeys("# nothing\n\n", "empty.pub"), { message: /^No keys in "empty.pub"/ });
  });

  test("a VM and a key are required; the command line is checked before files are read", () => {
    assert.throws(() => createBody("e", { sshKey: ["/nonexistent"] }), { message: "Give at least one --vm spec, e.g. --vm image=base,cpu=2,mem=1024" });
    assert.deepEqual(createBody("e", { vm: ["image=base"] }), { id: "e", vms: [{ image: "base" }] }, "no --ssh-key: no keys, as TTstack allows");
    assert.throws(() => createBody("e", { vm: ["image=base,cpu=x"], sshKey: ["/nonexistent"] }), { message: /cpu must be a whole number/ });
  });
});

describe("host add body", () => {
  test("http(s):// or a libvirt URI is a uri, anything else an addr HOST:PORT", () => {
    assert.deepEqual(registerBody("10.0.0.2:8080"), { addr: "10.0.0.2:8080" });
    assert.deepEqual(registerBody("node-a.lan:8080", { token: "t" }), { addr: "node-a.lan:8080", token: "t" });
    assert.deepEqual(registerBody("[::1]:8080"), { addr: "[::1]:8080" });
    assert.deepEqual(registerBody("http://10.0.0.2:8080", { id: "rack1-a" }), { uri: "http://10.0.0.2:8080", id: "rack1-a" });
    assert.deepEqual(registerBody("https://node-a:8443"), { uri: "https://node-a:8443" });
    // A libvirt URI is a uri too: the controller reads it (and refuses what it must).
    assert.deepEqual(registerBody("qemu:///system", { id: "kvm-1" }), { uri: "qemu:///system", id: "kvm-1" });
    assert.deepEqual(registerBody("qemu+ssh://root@10.0.0.2/system"), { uri: "qemu+ssh://root@10.0.0.2/system" });
    for (const bad of ["10.0.0.2", "node-a:http", "10.0.0.2:8080/x"]) {
      assert.throws(() => registerBody(bad), { message: `Invalid host address ${JSON.stringify(bad)}: use HOST:PORT (e.g. 10.0.0.2:8080) or http://HOST:PORT` });
    }
  });
});

function host(overrides: Partial<Host> = {}): Host {
  return {
    id: "node-a",
    addr: "10.0.0.2:8080",
    resource: { cpu_total: 16, cpu_used: 2, mem_total: 32 * GiB, mem_used: 2 * GiB, disk_total: 500 * GiB, disk_used: 100 * GiB, vm_count: 3 },
    state: "online",
    engines: ["qemu"],
    storage: "file",
    registered_at: unix("2025-01-01T10:00:00Z"),
    uri: "http://10.0.0.2:8080",
    kind: "corral",
    hostname: "node-a.lan",
    reserved: { cpu: 4, mem: 4 * GiB, disk: 80 * GiB },
    images: ["base", "alpine-cloud"],
    vm_count: 3,
    last_seen_at: unix("2025-01-01T11:59:48Z"),
    last_error: null,
    ...overrides,
  };
}

function vm(overrides: Partial<FleetVm> = {}): FleetVm {
  return {
    id: "my-env-1",
    env_id: "my-env",
    host_id: "node-a",
    image: "base",
    engine: "qemu",
    cpu: 2,
    mem: 1024,
    disk: 40960,
    ip: "10.0.2.15",
    port_map: { "22": 40022, "443": 40443, "80": 40080 },
    state: "running",
    created_at: unix("2025-01-01T11:00:00Z"),
    status: "running",
    host_addr: "10.0.0.2",
    ports: [22, 80, 443],
    deny_outgoing: false,
    error: null,
    ...overrides,
  };
}

function env(overrides: Partial<Env> = {}): Env {
  return {
    id: "my-env",
    owner: "alice",
    vm_ids: ["my-env-1"],
    created_at: unix("2025-01-01T11:00:00Z"),
    expires_at: unix("2025-01-01T17:00:00Z"),
    state: "active",
    status: "running",
    lifetime: 21_600,
    ssh_keys: ["ssh-ed25519 AAAA1 alice@laptop"],
    ...overrides,
  };
}

function detail(envOverrides: Partial<Env> = {}, vms: FleetVm[] = [vm()]): EnvDetail {
  return { env: env({ vm_ids: vms.map((v) => v.id), ...envOverrides }), vms };
}

describe("fleet tables and details", () => {
  test("spans read coarsely", () => {
    assert.deepEqual([0, 45, 59.9, 60, 754, 3600, 21_540, 86_400, 183_600].map(formatSpan), ["0s", "45s", "59s", "1m", "12m", "1h 0m", "5h 59m", "1d 0h", "2d 3h"]);
  });

  test("host rows: reserved of total, VMs, last seen", () => {
    assert.deepEqual(hostRows([host(), host({ id: "node-b", state: "offline", addr: "10.0.0.3:8080", last_seen_at: null, vm_count: 0 })], NOW), [
      ["node-a", "online", "10.0.0.2:8080", "4/16", "4 GiB/32 GiB", "80 GiB/500 GiB", "3", "12s ago"],
      ["node-b", "offline", "10.0.0.3:8080", "4/16", "4 GiB/32 GiB", "80 GiB/500 GiB", "0", "never"],
    ]);
    const libvirt = host({ id: "kvm-1", kind: "libvirt", addr: "10.0.0.4", uri: "qemu+ssh://root@10.0.0.4/system" });
    assert.equal(hostRows([libvirt], NOW)[0]?.[2], "qemu+ssh://root@10.0.0.4/system", "a libvirt host by its URI");
    assert.ok(hostDetails(libvirt, NOW).includes("  Kind:       libvirt daemon"));
  });

  test("host details, with its last error", () => {
    assert.deepEqual(hostDetails(host({ state: "offline", last_error: "connect ECONNREFUSED 10.0.0.2:8080" }), NOW), [
      "Host node-a: offline",
      "  Address:    10.0.0.2:8080 (http://10.0.0.2:8080)",
      "  Hostname:   node-a.lan",
      "  CPU:        4 (25%) reserved, 2 (13%) used, of 16 vCPUs",
      "  Memory:     4 GiB (13%) reserved, 2 GiB (6%) used, of 32 GiB",
      "  Disk:       80 GiB (16%) reserved, 100 GiB (20%) used, of 500 GiB",
      "  Engines:    qemu",
      "  Storage:    file",
      "  Images:     base, alpine-cloud",
      "  Registered: 2025-01-01T10:00:00.000Z",
      "  Kind:       Corral daemon",
      "  Last seen:  12s ago",
      "  Last error: connect ECONNREFUSED 10.0.0.2:8080",
    ]);
    const hostVm = {
      db_id: 1,
      name: "my-env-1",
      description: "",
      vcpu_count: 2,
      memory_bytes: 1024 ** 3,
      state: 1,
      graphics: { vnc: false, spice: false },
      status: "running" as const,
    };
    assert.deepEqual(
      hostVmRows([
        { ...hostVm, env_id: "my-env" },
        { ...hostVm, name: "sbox-1", env_id: null },
      ]),
      [
        ["my-env-1", "running", "2", "1 GiB", "my-env"],
        ["sbox-1", "running", "2", "1 GiB", "-"],
      ],
    );
  });

  test("env rows: owner, state, VM count, time left", () => {
    assert.deepEqual(envRows([env(), env({ id: "old", owner: "", status: "deleting", vm_ids: [], expires_at: unix("2025-01-01T11:00:00Z") })], NOW), [
      ["my-env", "alice", "running", "1", "5h 0m"],
      ["old", "-", "deleting", "0", "expired"],
    ]);
  });

  test("env details: a ready-to-paste ssh line and each other port as guest -> host:port", () => {
    const failed = vm({
      id: "my-env-2",
      host_id: "",
      host_addr: "",
      state: "failed",
      status: "error",
      port_map: {},
      error: 'no host has image "win"',
      image: "win",
      deny_outgoing: true,
    });
    assert.deepEqual(envDetails(detail({ status: "partial" }, [vm(), failed]), NOW), [
      "Environment my-env: partial, owner alice",
      "  Created 1h 0m ago; expires in 5h 0m (2025-01-01T17:00:00.000Z)",
      "",
      "VM my-env-1: running on node-a (base, 2 vCPUs, 1 GiB memory, 40 GiB disk)",
      "  ssh -p 40022 root@10.0.0.2",
      "  80 -> 10.0.0.2:40080",
      "  443 -> 10.0.0.2:40443",
      "",
      "VM my-env-2: error on - (win, 2 vCPUs, 1 GiB memory, 40 GiB disk, no outgoing traffic)",
      '  Error: no host has image "win"',
      "  No ports mapped yet",
    ]);
    assert.deepEqual(vmAccess(vm({ host_addr: "fd00::2", port_map: { "22": 2222, "80": 8080 } })), ["ssh -p 2222 root@fd00::2", "80 -> [fd00::2]:8080"]);
    assert.match(envDetails(detail({ ssh_keys: [] }), NOW).join("\n"), /No SSH keys: reach its VMs through the controller/);
  });

  test("fleet status: totals, and each resource reserved and used with its share", () => {
    const status: FleetStatus = {
      hosts: 3,
      hosts_online: 2,
      total_vms: 8,
      total_envs: 4,
      cpu_total: 32,
      cpu_used: 6,
      mem_total: 64 * GiB,
      mem_used: 0,
      disk_total: 1000 * GiB,
      disk_used: 0,
      hosts_offline: 1,
      vms_running: 7,
      vms_stopped: 1,
      vms_other: 0,
      cpu_reserved: 12,
      mem_reserved: 8 * GiB,
      disk_reserved: 5,
    };
    assert.deepEqual(statusSummary(status), ["Hosts: 2 online, 1 offline", "Envs:  4", "VMs:   7 running, 1 stopped"]);
    assert.deepEqual(capacityRows(status), [
      ["CPU", "12 (38%)", "6 (19%)", "32"],
      ["MEM", "8 GiB (13%)", "0 B (0%)", "64 GiB"],
      ["DISK", "5 MiB (<1%)", "0 B (0%)", "1000 GiB"],
    ]);
    assert.equal(percent(1, 0), "-", "no total, no share");
  });
});

describe("which controller", () => {
  let n = 0;
  async function stateDir(info?: { url: string }, key?: string): Promise<string> {
    const state = join(dir, `state-${++n}`);
    await mkdir(state, { recursive: true });
    if (key !== undefined) await writeFile(join(state, "api-key"), `${key}\n`, { mode: 0o600 });
    if (info) await writeControllerInfo(state, key === undefined ? info : { ...info, api_key_file: join(state, "api-key") });
    return state;
  }

  test("nothing recorded: the default URL and no key", async () => {
    assert.deepEqual(resolveFleetConnection({}, {}, await stateDir()), { url: DEFAULT_CONTROLLER_URL, apiKey: undefined });
  });

  test("controller.json gives the URL and, from its key file, the key", async () => {
    const state = await stateDir({ url: "http://127.0.0.1:9300" }, "recorded-key");
    assert.equal((await stat(controllerInfoFile(state))).mode & 0o777, 0o600);
    assert.deepEqual(readControllerInfo(state), { url: "http://127.0.0.1:9300", api_key_file: join(state, "api-key") });
    assert.deepEqual(resolveFleetConnection({}, {}, state), { url: "http://127.0.0.1:9300", apiKey: "recorded-key" });
    assert.deepEqual(
      resolveFleetConnection({ controller: "http://localhost:9300" }, {}, state),
      { url: "http://localhost:9300", apiKey: "recorded-key" },
      "a loopback name is the same controller",
    );
  });

  test("the environment beats controller.json; flags beat the environment", async () => {
    const state = await stateDir({ url: "http://127.0.0.1:9300" }, "recorded-key");
    const environment = { CORRAL_CONTROLLER: "http://ctl.lan:9200", CORRAL_API_KEY: "env-key" };
    assert.deepEqual(resolveFleetConnection({}, environment, state), { url: "http://ctl.lan:9200", apiKey: "env-key" });
    assert.deepEqual(resolveFleetConnection({ controller: "http://other:9200", apiKey: "flag-key" }, environment, state), { url: "http://other:9200", apiKey: "flag-key" });
    assert.deepEqual(resolveFleetConnection({ apiKey: "flag-key" }, {}, state), { url: "http://127.0.0.1:9300", apiKey: "flag-key" });
  });

  test("the recorded key is never sent to another controller", async () => {
    const state = await stateDir({ url: "http://127.0.0.1:9300" }, "recorded-key");
    assert.deepEqual(resolveFleetConnection({ controller: "http://ctl.lan:9300" }, {}, state), { url: "http://ctl.lan:9300", apiKey: undefined });
    assert.deepEqual(resolveFleetConnection({}, { CORRAL_CONTROLLER: "http://127.0.0.1:9400" }, state), { url: "http://127.0.0.1:9400", apiKey: undefined });
  });

  test("a broken controller.json counts as none", async () => {
    const state = await stateDir();
    await writeFile(controllerInfoFile(state), "{not json");
    assert.deepEqual(resolveFleetConnection({}, {}, state), { url: DEFAULT_CONTROLLER_URL, apiKey: undefined });
  });
});

describe("ControllerClient", () => {
  test("sends the key, encodes ids, and tells a finished delete from one still going", async () => {
    const seen: { method: string; url: string; auth: string | undefined; body: string }[] = [];
    const server = createServer(async (request: IncomingMessage, response) => {
      let body = "";
      for await (const chunk of request) body += String(chunk);
      seen.push({ method: request.method ?? "", url: request.url ?? "", auth: request.headers.authorization, body });
      const reply = (status: number, value?: unknown): void => {
        response.writeHead(status, value === undefined ? {} : { "content-type": "application/json" }).end(value === undefined ? undefined : JSON.stringify(value));
      };
      // The controller's TTstack routes answer in TTstack's envelope; Virtumancer's action route with 204.
      if (request.url === "/api/envs/done") reply(200, { ok: true });
      else if (request.url === "/api/envs/slow" && request.method === "DELETE") reply(202, { ok: true });
      else if (request.url === "/api/envs/slow") reply(200, { ok: true, data: detail({ id: "slow", status: "deleting" }) });
      else if (request.url === "/api/hosts" && request.method === "POST") reply(201, { ok: true, data: host() });
      else if (request.url === "/api/hosts/busy") reply(409, { ok: false, error: 'Cannot remove host "busy": it holds 2 VMs', code: "host_busy" });
      else if (request.url === "/api/status") reply(200, [{ not: "an envelope" }]);
      else if (request.url?.endsWith("/action")) reply(204);
      else reply(200, { ok: true, data: [] });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const client = new ControllerClient({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, apiKey: "k1" });
    try {
      assert.deepEqual(await client.envs.remove("done"), { status: "deleted" });
      const pending = await client.envs.remove("slow");
      assert.equal(pending.status, "deleting");
      assert.equal(pending.status === "deleting" && pending.env.env.id, "slow");
      assert.equal((await client.hosts.add({ addr: "10.0.0.2:8080" })).id, "node-a");
      await client.hosts.action("node a", "vm-1", "reboot");
      await assert.rejects(client.hosts.remove("busy"), (err: unknown) => err instanceof CorralApiError && err.status === 409 && err.code === "host_busy");
      await assert.rejects(client.status(), /not TTstack's envelope/);
      assert.deepEqual(
        seen.map((r) => [r.method, r.url, r.auth, r.body]),
        [
          ["DELETE", "/api/envs/done", "Bearer k1", ""],
          ["DELETE", "/api/envs/slow", "Bearer k1", ""],
          ["GET", "/api/envs/slow", "Bearer k1", ""],
          ["POST", "/api/hosts", "Bearer k1", '{"addr":"10.0.0.2:8080"}'],
          ["POST", "/api/hosts/node%20a/vms/vm-1/action", "Bearer k1", '{"action":"reboot"}'],
          ["DELETE", "/api/hosts/busy", "Bearer k1", ""],
          ["GET", "/api/status", "Bearer k1", ""],
        ],
      );
    } finally {
      await client.close();
      server.close();
    }
  });
});
