// Networking on the API of a real daemon with a user-mode group and one real VM (no devices made, nothing
// sent anywhere): GET /vm/HOST's network in the Go SDK's shape, PATCH /vm/HOST/network's refusals for a
// user-mode VM, create's ip/network and fork's network checked against the mode, each group's network in
// /hostgroup and /info, and TTstack's hardware NIC. Bridge and isolated VMs are the net-*.test.ts files'.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { CorralClient } from "../../src/sdk/index.ts";
import { corral } from "../helpers/cli-process.ts";
import { startInProcess, type InProcessServers } from "../helpers/in-process.ts";

describe("networking on the daemon's API (user mode)", { timeout: 600_000 }, () => {
  let running: InProcessServers;
  let client: CorralClient;
  let vm: string;

  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
    const res = await fetch(`${running.daemon.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${running.token}`, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  };
  const refused = async (method: string, path: string, body: unknown, status: number, code: string, message: RegExp): Promise<void> => {
    const answer = await call(method, path, body);
    assert.equal(answer.status, status, `${method} ${path} ${JSON.stringify(body)}: ${JSON.stringify(answer.json)}`);
    assert.equal(answer.json.code, code);
    assert.match(String(answer.json.error), message);
  };

  before(async () => {
    running = await startInProcess();
    client = new CorralClient({ url: running.daemon.url, token: running.token });
    vm = (await client.createNode("sbox", {}, { wait: "agent", timeout: "300s" })).hostname;
  });

  after(async () => {
    await client?.close();
    await running?.stop();
  });

  test("GET /vm/HOST answers the network in Slicer's Go SDK shape, with the NIC and Corral's fields", async () => {
    const described = await client.describe(vm);
    const node = (await client.nodes()).find((n) => n.hostname === vm)!;
    assert.deepEqual(described.network, {
      mode: "user",
      policy_source: "host_group",
      host_group: { allow: [], drop: [] },
      effective: { allow: [], drop: [] },
      deny_outgoing: false,
      port_map: {},
      interface: { mode: "user", mac: described.network.interface.mac, address: node.ip, prefix_length: 24, gateway: "10.0.2.2", bridge: null, target_dev: null },
    });
    assert.match(described.network.interface.mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  });

  test("PATCH /vm/HOST/network: lists are a 400 for a user-mode VM, deny_outgoing a 409, bad bodies 400, unknown VMs 404", async () => {
    const path = `/vm/${vm}/network`;
    await refused(
      "PATCH",
      path,
      { allow: ["0.0.0.0/0"] },
      400,
      "invalid_request",
      /^Invalid body field "allow": host group "sbox" uses user-mode networking \(config\.host_groups\[0\]\.network\.mode\)/,
    );
    await refused("PATCH", path, { drop: ["10.0.0.0/8", "nope"] }, 400, "invalid_request", /^Invalid body field "drop\[1\]": "nope" is not an IPv4 address/);
    await refused("PATCH", path, { deny_outgoing: true }, 409, "conflict", /user-mode networking/);
    await refused("PATCH", path, {}, 400, "invalid_request", /at least one of the body fields "allow", "drop" and "deny_outgoing"/);
    await refused("PATCH", path, { allow: "0.0.0.0/0" }, 400, "invalid_request", /allow/);
    await refused("PATCH", path, { mode: "bridge" }, 400, "invalid_request", /mode/);
    await refused("PATCH", "/vm/no-such-vm/network", { deny_outgoing: true }, 404, "vm_not_found", /no-such-vm/);
    // Nothing changed.
    assert.equal((await client.describe(vm)).network.deny_outgoing, false);
  });

  test("create: ip and network are refused in a user-mode group, naming the field and where the mode is set", async () => {
    const before = (await client.nodes()).length;
    await refused(
      "POST",
      "/hostgroup/sbox/nodes",
      { ip: "10.0.2.15" },
      400,
      "invalid_request",
      /^Invalid body field "ip": host group "sbox" uses user-mode networking \(config\.host_groups\[0\]\.network\.mode\)/,
    );
    await refused(
      "POST",
      "/hostgroup/sbox/nodes",
      { network: { allow: [] } },
      400,
      "invalid_request",
      /^Invalid body field "network": host group "sbox" uses user-mode networking/,
    );
    await refused("POST", "/hostgroup/sbox/nodes", { network: { allow: [1] } }, 400, "invalid_request", /network\.allow\[0\]|network\/allow\/0/);
    assert.equal((await client.nodes()).length, before);
  });

  test("fork takes Slicer's network field (the commit is looked up first)", async () => {
    await refused("POST", "/vm/commits/c-0123456789ab/fork", { network: { allow: [], drop: ["10.0.0.0/8"] } }, 404, "commit_not_found", /c-0123456789ab/);
    await refused("POST", "/vm/commits/c-0123456789ab/fork", { network: { allow: [], extra: 1 } }, 400, "invalid_request", /extra/);
  });

  test("GET /hostgroup and GET /info show each group's network", async () => {
    const groups = await client.hostGroups();
    assert.deepEqual(groups.find((g) => g.name === "sbox")?.network, { mode: "user", state: "ready", reason: "" });
    const info = await client.info();
    assert.deepEqual(
      info.network.groups.find((g) => g.name === "sbox"),
      { name: "sbox", mode: "user", state: "ready", reason: "" },
    );
  });

  test("TTstack's GET /api/vms/ID names the NIC as libvirt does, and net_stats by the same device", async () => {
    const answer = await call("GET", `/api/vms/${vm}`);
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    const detail = answer.json.data as { hardware: { networks: unknown[] }; mac: string; ip: string };
    assert.deepEqual(detail.hardware.networks, [
      {
        type: "user",
        mac: { address: detail.mac },
        source: { mode: "user" },
        model: { model_type: "virtio" },
        target: { dev: "eth0" },
        ip: { address: `${detail.ip}/24`, gateway: "10.0.2.2" },
        policy: { source: "host_group", allow: [], drop: [], deny_outgoing: false },
      },
    ]);
  });

  test("the CLI: vm network and vm show print the NIC and policy; a change is refused as the API refuses it", async () => {
    const env = { CORRAL_URL: running.daemon.url, CORRAL_TOKEN: running.token };
    const shown = await corral(["vm", "network", vm], env);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^network: {4}user, 10\.0\.2\.15\/24 via 10\.0\.2\.2$/m);
    assert.match(shown.stdout, /^outgoing: {3}allowed$/m);
    const json = await corral(["vm", "network", vm, "--json"], env);
    assert.equal((JSON.parse(json.stdout) as { mode: string }).mode, "user");
    assert.match((await corral(["vm", "show", vm], env)).stdout, /^mac: {8}52:54:00(:[0-9a-f]{2}){3}$/m);
    const refusedChange = await corral(["vm", "network", vm, "--deny-outgoing"], env);
    assert.notEqual(refusedChange.code, 0);
    assert.match(refusedChange.stderr, /user-mode networking/);
  });
});
