// Sandbox lifetimes on a real daemon: the group's default and maximum, a create's own lifetime, expires_at
// in every view, PATCH /vm/HOST to extend or shorten, bad values refused naming the field, the reaper
// deleting expired sandboxes (counted in the metrics), expiries kept across restarts and applied at start
// when they passed while the daemon was down, and the CLI's --lifetime, EXPIRES, vm show and vm lifetime.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CorralApiError } from "../../src/sdk/index.ts";
import { corral } from "../helpers/cli-process.ts";
import { TestDaemon, vmQemuPids } from "../helpers/daemon-process.ts";
import { until } from "../helpers/until.ts";

const CONFIG = `config:
  host_groups:
    - name: sbox
      image: base
      vcpu: 1
      ram_mb: 256
      template: false
      lifetime: 1h
      max_lifetime: 2h
    - name: free
      image: base
      vcpu: 1
      ram_mb: 256
      template: false
    - name: svc
      image: base
      count: 1
      vcpu: 1
      ram_mb: 256
      template: false
      lifetime: 10m
`;

const MINUTE = 60_000;
const at = (iso: string | undefined): number => Date.parse(iso ?? "");

function refusal(status: number, code: string, message: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof CorralApiError, `expected an API error, got ${String(err)}`);
    assert.equal(err.status, status);
    assert.equal(err.code, code);
    assert.match(err.message, message);
    return true;
  };
}

describe("sandbox lifetimes", { timeout: 900_000 }, () => {
  let daemon: TestDaemon;

  before(async () => {
    daemon = await TestDaemon.create(CONFIG);
    await daemon.start();
  });

  after(async () => {
    await daemon.dispose();
  });

  test("a create gets its group's lifetime, shown as expires_at in the answer, GET /vm/HOST and /nodes", async () => {
    const created = await daemon.client.createNode("sbox");
    assert.equal(at(created.expires_at) - at(created.created_at), 60 * MINUTE);
    assert.equal((await daemon.client.describe(created.hostname)).expires_at, created.expires_at);
    assert.equal((await daemon.client.nodes()).find((n) => n.hostname === created.hostname)?.expires_at, created.expires_at);
    const free = await daemon.client.createNode("free");
    assert.equal(free.expires_at, undefined, "a group without a lifetime gives none");
    assert.equal((await daemon.client.describe(free.hostname)).expires_at, undefined);
    const service = await daemon.client.describe("svc-1");
    assert.equal(service.expires_at, undefined, "services get no lifetime from their group");
    await daemon.client.deleteNode("sbox", created.hostname);
    await daemon.client.deleteNode("free", free.hostname);
  });

  test("a create may ask for its own lifetime, as a duration or seconds, up to the group's maximum", async () => {
    const shorter = await daemon.client.createNode("sbox", { lifetime: "30m" });
    assert.equal(at(shorter.expires_at) - at(shorter.created_at), 30 * MINUTE);
    const seconds = await daemon.client.createNode("free", { lifetime: 5400 });
    assert.equal(at(seconds.expires_at) - at(seconds.created_at), 90 * MINUTE);
    const count = (await daemon.client.nodes()).length;
    const bad: [unknown, string, RegExp][] = [
      ["3h", "invalid_duration", /^Invalid lifetime "3h": host group "sbox" allows at most "2h" \(its max_lifetime\)$/],
      ["0s", "invalid_duration", /^Invalid body field "lifetime" "0s": a lifetime must be at least "1s"$/],
      [0, "invalid_duration", /^Invalid body field "lifetime" 0: a lifetime must be at least "1s"$/],
      [-60, "invalid_duration", /^Invalid body field "lifetime" -60: give a positive number of seconds/],
      ["-5m", "invalid_duration", /^Invalid body field "lifetime" "-5m": use a duration such as/],
      ["soon", "invalid_duration", /^Invalid body field "lifetime" "soon": use a duration such as/],
      ["800h", "invalid_duration", /the longest allowed is 720h$/],
      [true, "invalid_request", /^Invalid body field "lifetime": it must be a string or a number$/],
    ];
    for (const [lifetime, code, message] of bad) {
      await assert.rejects(daemon.client.createNode("sbox", { lifetime } as never), refusal(400, code, message));
    }
    assert.equal((await daemon.client.nodes()).length, count, "a refused create makes no VM");
    await daemon.client.deleteNode("sbox", shorter.hostname);
    await daemon.client.deleteNode("free", seconds.hostname);
  });

  test("an expired sandbox is deleted with its QEMU within seconds, and counted", async () => {
    const created = await daemon.client.createNode("free", { lifetime: "3s" });
    const pids = vmQemuPids(daemon.stateDir).length;
    await until(async () => ((await daemon.client.nodes()).some((n) => n.hostname === created.hostname) ? undefined : true), "the sandbox to expire", 60_000, 200);
    await until(() => (vmQemuPids(daemon.stateDir).length === pids - 1 ? true : undefined), "its QEMU to end", 30_000);
    assert.match(daemon.log, new RegExp(`"vm":"${created.hostname}"[^\\n]*"msg":"VM expired: deleted with its disk"`));
    assert.match(await daemon.client.metrics(), /corral_vm_expired_total\{hostgroup="free"\} 1\b/);
  });

  test("a lifetime shorter than the boot: a create that waits for the agent is still answered 201, then the sandbox expires", async () => {
    const created = await daemon.client.createNode("free", { lifetime: "1s" }, { wait: "agent", timeout: "300s" });
    assert.ok(at(created.expires_at) <= Date.now(), "it expired while it booted");
    await until(async () => ((await daemon.client.nodes()).some((n) => n.hostname === created.hostname) ? undefined : true), "the sandbox to expire", 60_000, 200);
  });

  test("PATCH /vm/HOST extends or shortens a lifetime, within the group's maximum; services refuse one", async () => {
    const vm = await daemon.client.createNode("sbox", { lifetime: "10m" });
    const before = Date.now();
    const extended = await daemon.client.setLifetime(vm.hostname, "90m");
    assert.ok(at(extended.expires_at) >= before + 90 * MINUTE && at(extended.expires_at) <= Date.now() + 90 * MINUTE, extended.expires_at);
    assert.equal((await daemon.client.describe(vm.hostname)).expires_at, extended.expires_at);
    await assert.rejects(
      daemon.client.setLifetime(vm.hostname, "2h"),
      refusal(400, "invalid_duration", /^Invalid lifetime "2h": VM "sbox-\d+" may live until \S+ at most \(host group "sbox" has max_lifetime "2h"\)$/),
    );
    await assert.rejects(daemon.client.setLifetime(vm.hostname, null), refusal(400, "invalid_duration", /must end within "2h" of their creation/));
    await assert.rejects(daemon.client.setLifetime(vm.hostname, "0s"), refusal(400, "invalid_duration", /^Invalid body field "lifetime" "0s"/));
    await assert.rejects(daemon.client.setLifetime("svc-1", "1h"), refusal(400, "invalid_request", /^Invalid lifetime: VM "svc-1" is a service of host group "svc"/));
    await assert.rejects(daemon.client.setLifetime("nope-1", "1h"), refusal(404, "vm_not_found", /nope-1/));
    await assert.rejects(
      daemon.client.setLifetime(vm.hostname, true as never),
      refusal(400, "invalid_request", /^Invalid body field "lifetime": it must be a string or a number or null$/),
    );
    await assert.rejects(daemon.client.transport.json("PATCH", `/vm/${vm.hostname}`, {}), refusal(400, "invalid_request", /^Missing body field "lifetime"$/));
    await assert.rejects(daemon.client.transport.json("PATCH", `/vm/${vm.hostname}`, { lifetime: "1h", ttl: 3 }), refusal(400, "invalid_request", /^Unknown body field "ttl"$/));

    const free = await daemon.client.createNode("free", { lifetime: "1h" });
    assert.equal((await daemon.client.setLifetime(free.hostname, null)).expires_at, undefined, "null: no end, in a group without a maximum");
    // Shortened to a few seconds: the reaper takes it.
    await daemon.client.setLifetime(free.hostname, 2);
    await until(async () => ((await daemon.client.nodes()).some((n) => n.hostname === free.hostname) ? undefined : true), "the shortened sandbox to expire", 60_000, 200);
    await daemon.client.deleteNode("sbox", vm.hostname);
  });

  test("expiries survive a kill -9; one that passed while the daemon was down is applied at start", async () => {
    const soon = await daemon.client.createNode("free", { lifetime: "15s" });
    const later = await daemon.client.createNode("free", { lifetime: "1h" });
    await daemon.kill9();
    const wait = at(soon.expires_at) - Date.now() + 1000;
    if (wait > 0) await sleep(wait);
    await daemon.start();
    // daemon.json is written once recovery and the first sweep are done: no polling here.
    const names = (await daemon.client.nodes()).map((n) => n.hostname);
    // Seen once in CI (later not found after the restart), never alone: the daemon's log says what recovery did.
    if (!names.includes(later.hostname))
      process.stderr.write(`lifetime: ${later.hostname} is gone after the restart; the daemon's log:\n${daemon.log.split("\n").slice(-60).join("\n")}\n`);
    assert.equal(names.includes(soon.hostname), false, "expired while the daemon was down: gone at start");
    assert.equal((await daemon.client.describe(later.hostname)).expires_at, later.expires_at, "the other keeps its expiry");
    assert.match(daemon.log, new RegExp(`"vm":"${soon.hostname}"[^\\n]*"msg":"VM expired: deleted with its disk"`));
    assert.equal(vmQemuPids(daemon.stateDir).length, 2, "svc-1 and the later sandbox run; the expired one's QEMU is gone");
    // The reaper runs on after the restart.
    await daemon.client.setLifetime(later.hostname, 2);
    await until(async () => ((await daemon.client.nodes()).some((n) => n.hostname === later.hostname) ? undefined : true), "the sandbox to expire after the restart", 60_000, 200);
  });

  test("the CLI: vm add --lifetime, EXPIRES in vm list, vm show, vm lifetime", async () => {
    const env = { CORRAL_URL: daemon.url };
    const added = await corral(["vm", "add", "free", "--lifetime", "10m", "--wait", "none"], env);
    assert.equal(added.code, 0, added.stderr);
    const hostname = added.stdout.trim();
    assert.match(added.stderr, new RegExp(`^Created ${hostname} in [\\d.]+s \\(booting\\), expires in (9|10)m\\.`));
    const list = (await corral(["vm", "list"], env)).stdout.split("\n");
    assert.match(list[0] ?? "", /^HOSTNAME\s+GROUP\s+STATUS\s+HEALTH\s+CPUS\s+RAM\s+IP\s+AGE\s+EXPIRES\s+TAGS$/);
    assert.match(list.find((l) => l.startsWith(hostname)) ?? "", /\sin (9|10)m\s*$/);
    assert.match(list.find((l) => l.startsWith("svc-1")) ?? "", /\s-\s*$/, "a service never expires");
    const show = await corral(["vm", "show", hostname], env);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, new RegExp(`^hostname:\\s+${hostname}\\ngroup:\\s+free\\n`));
    assert.match(show.stdout, /\nexpires:\s+\S+Z \(in (9|10)m\)\n/);
    const set = await corral(["vm", "lifetime", hostname, "2h"], env);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, new RegExp(`^${hostname} expires at \\S+Z \\(in (119m|120m|2h)\\)\\n$`));
    assert.equal((await corral(["vm", "lifetime", hostname, "none"], env)).stdout, `${hostname} never expires\n`);
    assert.match((await corral(["vm", "show", hostname], env)).stdout, /\nexpires:\s+never\n/);
    const bad = await corral(["vm", "add", "free", "--lifetime", "forever"], env);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^corral: Invalid body field "lifetime" "forever": use a duration such as .* \(400 invalid_duration\)\n$/);
    assert.equal((await corral(["vm", "delete", hostname], env)).code, 0);
  });
});
