// Sandboxes are clones of a template snapshot: each clone is its own machine (random bytes, ids, names,
// clock, MAC), templates follow the image, a broken template only costs a cold boot, clones survive a
// daemon kill -9, and nothing is left behind but the current template.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { readdir, rm, truncate } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { TemplateInfo } from "../../src/sdk/index.ts";
import { TEST_CONFIG, TestDaemon } from "../helpers/daemon-process.ts";
import { until } from "../helpers/until.ts";

const CORRAL = fileURLToPath(new URL("../../corral", import.meta.url));

describe("template snapshots", { timeout: 900_000 }, () => {
  let daemon: TestDaemon;

  const sh = async (hostname: string, script: string): Promise<string> => {
    const result = await daemon.client.execBuffered(hostname, { cmd: "sh", args: ["-c", script] });
    assert.equal(result.exit_code, 0, `${script}: ${result.stderr}`);
    return result.stdout.trim();
  };
  const template = async (): Promise<TemplateInfo> => {
    const found = (await daemon.client.templates()).find((t) => t.hostgroup === "sbox");
    assert.ok(found);
    return found;
  };
  const readyTemplate = (notId?: string): Promise<TemplateInfo> =>
    until(
      async () => {
        const t = await template();
        return t.state === "ready" && t.template_id !== notId ? t : undefined;
      },
      "a ready template",
      180_000,
    );
  const wasCloned = (hostname: string): boolean => new RegExp(`"vm":"${hostname}"[^\\n]*"msg":"VM cloned from its template"`).test(daemon.log);
  const templateDirs = async (): Promise<string[]> => (await readdir(join(daemon.stateDir, "templates"))).sort();

  before(async () => {
    daemon = await TestDaemon.create(`${TEST_CONFIG}    - name: cold\n      image: base\n      vcpu: 1\n      ram_mb: 512\n      template: false\n`);
    await daemon.start();
  });

  after(async () => {
    await daemon.dispose();
  });

  test("the daemon builds its template in the background and reports it in /templates and /info", async () => {
    const ready = await readyTemplate();
    assert.match(ready.template_id ?? "", /^t-[0-9a-f]{8}-[0-9a-f]{6}$/);
    assert.equal(ready.cpus, 1);
    assert.equal(ready.ram_bytes, 512 * 1024 * 1024);
    assert.ok((ready.build_ms ?? 0) > 0);
    const info = await daemon.client.info();
    assert.deepEqual(
      info.templates.map((t) => [t.hostgroup, t.state, t.template_id]),
      [
        ["sbox", "ready", ready.template_id],
        ["cold", "disabled", null],
      ],
    );
  });

  test("two clones are two machines: random bytes, uuids, machine ids, names, MACs differ; clocks are right", async () => {
    const [a, b] = [await daemon.client.createNode("sbox", {}, { wait: "agent" }), await daemon.client.createNode("sbox", {}, { wait: "agent" })];
    assert.ok(wasCloned(a.hostname) && wasCloned(b.hostname), daemon.log);
    const probe = "hostname; cat /proc/sys/kernel/random/uuid; head -c32 /dev/urandom | sha256sum; cat /etc/machine-id; cat /sys/class/net/eth0/address; date +%s";
    const [outA, outB] = [await sh(a.hostname, probe), await sh(b.hostname, probe)];
    const hostSeconds = Date.now() / 1000;
    const [nameA, uuidA, randomA, idA, macA, clockA] = outA.split("\n");
    const [nameB, uuidB, randomB, idB, macB, clockB] = outB.split("\n");
    assert.equal(nameA, a.hostname);
    assert.equal(nameB, b.hostname);
    assert.notEqual(uuidA, uuidB);
    assert.notEqual(randomA, randomB);
    assert.match(idA ?? "", /^[0-9a-f]{32}$/);
    assert.notEqual(idA, idB);
    assert.notEqual(macA, macB);
    for (const clock of [clockA, clockB]) assert.ok(Math.abs(Number(clock) - hostSeconds) < 5, `guest clock ${clock} vs host ${hostSeconds}`);
    // The clone's console log starts with the boot of the machine it was copied from.
    assert.match((await daemon.client.logs(a.hostname)).content, /corral-boot: corral-template is up/);
    // The clone has a network that works (the MAC changed under a live interface).
    assert.equal(await sh(a.hostname, "ip -o link show eth0 | grep -c UP"), "1");
    // Ids the agent makes (background jobs) come from the kernel's rekeyed generator, not one Node seeded in
    // the template: the clones' first job ids differ.
    const [jobA, jobB] = [await daemon.client.bg.exec(a.hostname, { cmd: "true" }), await daemon.client.bg.exec(b.hostname, { cmd: "true" })];
    assert.notEqual(jobA.exec_id, jobB.exec_id);
    assert.equal((await template()).clones, 2);
    await daemon.client.deleteNode("sbox", a.hostname);
    await daemon.client.deleteNode("sbox", b.hostname);
  });

  test("a sandbox of another size than the group's default, or of a group without templates, boots cold", async () => {
    const other = await daemon.client.createNode("sbox", { ram_bytes: 256 * 1024 * 1024 }, { wait: "agent" });
    const cold = await daemon.client.createNode("cold", {}, { wait: "agent" });
    for (const node of [other, cold]) {
      assert.equal(wasCloned(node.hostname), false);
      assert.equal(await sh(node.hostname, "hostname"), node.hostname);
    }
    await daemon.client.deleteNode("sbox", other.hostname);
    await daemon.client.deleteNode("cold", cold.hostname);
  });

  test("a new image version gets a new template; clones of the old one keep running; the old one goes with its last clone", async () => {
    const first = await readyTemplate();
    const old = await daemon.client.createNode("sbox", {}, { wait: "agent" });
    assert.ok(wasCloned(old.hostname));
    await sh(old.hostname, "echo kept > /root/marker");
    await promisify(execFile)(CORRAL, ["image", "build", "--force"], { timeout: 600_000 });
    // The first create after the change cannot use the old template: it boots cold and starts the rebuild.
    const cold = await daemon.client.createNode("sbox", {}, { wait: "agent" });
    assert.equal(wasCloned(cold.hostname), false);
    const second = await readyTemplate(first.template_id ?? undefined);
    assert.notEqual(second.image_version, first.image_version);
    const fresh = await daemon.client.createNode("sbox", {}, { wait: "agent" });
    assert.ok(wasCloned(fresh.hostname));
    assert.equal(await sh(old.hostname, "cat /root/marker"), "kept");
    assert.deepEqual(await templateDirs(), [first.template_id, second.template_id].sort());
    await daemon.client.deleteNode("sbox", old.hostname);
    await until(async () => ((await templateDirs()).length === 1 ? true : undefined), "the old template to be removed", 10_000);
    assert.deepEqual(await templateDirs(), [second.template_id]);
    await daemon.client.deleteNode("sbox", cold.hostname);
    await daemon.client.deleteNode("sbox", fresh.hostname);
  });

  test("a corrupt template costs a cold boot and a log line, never a failed create; then it is rebuilt", async () => {
    const broken = await readyTemplate();
    await truncate(join(daemon.stateDir, "templates", broken.template_id as string, "state"), 100);
    const node = await daemon.client.createNode("sbox", {}, { wait: "agent" });
    assert.equal(await sh(node.hostname, "hostname"), node.hostname);
    assert.equal(wasCloned(node.hostname), false);
    assert.match(daemon.log, /Template is missing or broken: creating VMs by cold boot until it is rebuilt/);
    const rebuilt = await readyTemplate(broken.template_id ?? undefined);
    const clone = await daemon.client.createNode("sbox", {}, { wait: "agent" });
    assert.ok(wasCloned(clone.hostname));
    assert.equal(existsSync(join(daemon.stateDir, "templates", broken.template_id as string)), false);
    assert.equal((await template()).template_id, rebuilt.template_id);
    await daemon.client.deleteNode("sbox", node.hostname);
    await daemon.client.deleteNode("sbox", clone.hostname);
  });

  test("a template whose files are gone costs a cold boot too, and is rebuilt", async () => {
    const gone = await readyTemplate();
    await rm(join(daemon.stateDir, "templates", gone.template_id as string), { recursive: true });
    const node = await daemon.client.createNode("sbox", {}, { wait: "agent" });
    assert.equal(wasCloned(node.hostname), false);
    assert.equal(await sh(node.hostname, "hostname"), node.hostname);
    const rebuilt = await readyTemplate(gone.template_id ?? undefined);
    assert.notEqual(rebuilt.template_id, gone.template_id);
    await daemon.client.deleteNode("sbox", node.hostname);
  });

  test("rebuild on request: a new template id while clones of the old one keep running", async () => {
    const before = await readyTemplate();
    const clone = await daemon.client.createNode("sbox", {}, { wait: "agent" });
    const { stdout } = await promisify(execFile)(CORRAL, ["template", "rebuild", "sbox", "--wait", "--url", daemon.url]);
    assert.match(stdout, /^Template of sbox: ready \(built in \d+\.\ds\) \(t-[0-9a-f]{8}-[0-9a-f]{6}\)\n$/);
    const after = await template();
    assert.notEqual(after.template_id, before.template_id);
    assert.equal(await sh(clone.hostname, "hostname"), clone.hostname);
    const list = await promisify(execFile)(CORRAL, ["template", "list", "--url", daemon.url]);
    assert.match(list.stdout, /^HOSTGROUP\s+STATE\s+TEMPLATE/);
    assert.match(list.stdout, new RegExp(`sbox\\s+ready \\(built in [\\d.]+s\\)\\s+${after.template_id}`));
    await daemon.client.deleteNode("sbox", clone.hostname);
    await until(async () => ((await templateDirs()).length === 1 ? true : undefined), "the replaced template to be removed", 10_000);
  });

  test("bad requests: unknown group 404, invalid name 400, group without templates 409", async () => {
    type ApiError = Error & { status?: number; code?: string };
    await assert.rejects(daemon.client.rebuildTemplate("nope"), (err: ApiError) => err.status === 404 && err.code === "hostgroup_not_found");
    await assert.rejects(daemon.client.rebuildTemplate("Bad_Name"), (err: ApiError) => err.status === 400 && /name/.test(err.message));
    await assert.rejects(daemon.client.rebuildTemplate("cold"), (err: ApiError) => err.status === 409 && /does not use templates/.test(err.message));
  });

  test("clones survive a daemon kill -9 and are re-attached; deleting every clone leaves only the template", async () => {
    await readyTemplate();
    const clone = await daemon.client.createNode("sbox", {}, { wait: "agent" });
    await sh(clone.hostname, "echo before > /tmp/state");
    const pid = readFileSync(join(daemon.stateDir, "vms", clone.hostname, "qemu.pid"), "utf8").trim();
    await daemon.kill9();
    await daemon.start();
    assert.equal(await sh(clone.hostname, "cat /tmp/state"), "before");
    assert.equal(readFileSync(join(daemon.stateDir, "vms", clone.hostname, "qemu.pid"), "utf8").trim(), pid);
    await daemon.client.deleteNode("sbox", clone.hostname);
    const current = await readyTemplate();
    assert.deepEqual(await readdir(join(daemon.stateDir, "vms")), []);
    assert.deepEqual(await templateDirs(), [current.template_id]);
    assert.deepEqual((await readdir(join(daemon.stateDir, "templates", current.template_id as string))).sort(), [
      "disk.qcow2",
      "qemu.log",
      "ram",
      "serial.log",
      "state",
      "template.json",
    ]);
  });
});
