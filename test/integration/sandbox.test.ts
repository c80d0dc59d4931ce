// Sandboxes end to end: a real daemon boots real VMs (TCG here) and runs commands in them through the
// guest agent.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { Readable } from "node:stream";
import { request } from "undici";
import type { ExecFrame } from "../../src/sdk/index.ts";
import { qemuPids, TestDaemon } from "../helpers/daemon-process.ts";

async function frames(iterable: AsyncIterable<ExecFrame>): Promise<ExecFrame[]> {
  const all: ExecFrame[] = [];
  for await (const frame of iterable) all.push(frame);
  return all;
}

describe("sandboxes", { timeout: 600_000 }, () => {
  let daemon: TestDaemon;
  let hostname: string;

  before(async () => {
    daemon = await TestDaemon.create();
    await daemon.start();
    const created = await daemon.client.createNode("sbox", { tags: ["suite=sandbox"] }, { wait: "agent", timeout: "120s" });
    hostname = created.hostname;
  });

  after(async () => {
    await daemon.dispose();
  });

  test("create with wait=agent answers with the new node, ready for exec", async () => {
    assert.equal(hostname, "sbox-1");
    const nodes = await daemon.client.nodes();
    assert.equal(nodes.length, 1);
    assert.equal(nodes[0]?.hostname, "sbox-1");
    assert.equal(nodes[0]?.status, "Running");
    assert.equal(nodes[0]?.cpus, 1);
    assert.equal(nodes[0]?.ram_bytes, 512 * 1024 * 1024);
    assert.deepEqual(nodes[0]?.tags, ["suite=sandbox"]);
    const health = await daemon.client.health(hostname);
    assert.equal(health.hostname, hostname);
    assert.ok(health.agent_uptime > 0, "agent_uptime is positive nanoseconds");
    assert.ok(health.system_uptime > health.agent_uptime, "the system booted before the agent started");
    assert.equal(health.userdata_ran, true);
  });

  test("buffered exec of uname reports the guest kernel and the VM's hostname", async () => {
    const result = await daemon.client.execBuffered(hostname, { cmd: "uname", args: ["-a"] });
    assert.equal(result.exit_code, 0);
    assert.match(result.stdout, /^Linux sbox-1 6\.\S+-cloud-amd64 .* x86_64/);
    assert.equal(result.stderr, "");
    assert.ok(result.pid && result.pid > 1);
  });

  test("exit codes, stderr, env and cwd reach the caller", async () => {
    const result = await daemon.client.execBuffered(hostname, {
      cmd: "sh",
      args: ["-c", 'echo "$GREETING from $(pwd)"; echo oops >&2; exit 42'],
      env: { GREETING: "hello world" },
      cwd: "/tmp",
    });
    assert.equal(result.exit_code, 42);
    assert.equal(result.stdout, "hello world from /tmp\n");
    assert.equal(result.stderr, "oops\n");
  });

  test("the guest's clock keeps time with the host's", async () => {
    const uptime = async (): Promise<number> => Number((await daemon.client.execBuffered(hostname, { cmd: "cat", args: ["/proc/uptime"] })).stdout.split(" ")[0]);
    const hostStart = performance.now();
    const guestStart = await uptime();
    await new Promise((r) => setTimeout(r, 4000));
    const guestEnd = await uptime();
    const hostSeconds = (performance.now() - hostStart) / 1000;
    const ratio = (guestEnd - guestStart) / hostSeconds;
    assert.ok(ratio > 0.9 && ratio < 1.1, `guest time ran at ${ratio.toFixed(3)}x host time`);
    const guestNow = Number((await daemon.client.execBuffered(hostname, { cmd: "date", args: ["+%s"] })).stdout);
    assert.ok(Math.abs(guestNow - Date.now() / 1000) < 3, "the guest's wall clock is the host's");
  });

  test("HEAD /vm/HOST/health answers 200 with no body; unknown VMs 404", async () => {
    const ok = await request(`${daemon.url}/vm/${hostname}/health`, { method: "HEAD" });
    assert.equal(ok.statusCode, 200);
    assert.equal(await ok.body.text(), "");
    const missing = await request(`${daemon.url}/vm/nope-1/health`, { method: "HEAD" });
    assert.equal(missing.statusCode, 404);
    await missing.body.dump();
  });

  test("uid and gid run the command as that user", async () => {
    const result = await daemon.client.execBuffered(hostname, { cmd: "sh", args: ["-c", "id -u; id -g; echo $HOME"], uid: 65534, gid: 65534 });
    assert.equal(result.exit_code, 0, result.stderr);
    assert.equal(result.stdout, "65534\n65534\n/nonexistent\n");
    const root = await daemon.client.execBuffered(hostname, { cmd: "id", args: ["-u"] });
    assert.equal(root.stdout, "0\n", "root by default");
  });

  test("a missing command is exit code 127 with an error, a missing cwd too", async () => {
    const missing = await daemon.client.execBuffered(hostname, { cmd: "no-such-command" });
    assert.equal(missing.exit_code, 127);
    assert.match(missing.error ?? "", /not found/);
    const badCwd = await daemon.client.execBuffered(hostname, { cmd: "true", cwd: "/does/not/exist" });
    assert.equal(badCwd.exit_code, 127);
    assert.match(badCwd.error ?? "", /Working directory/);
  });

  test("streaming exec sends started, output in order, then exit", async () => {
    const all = await frames(daemon.client.exec(hostname, { cmd: "sh", args: ["-c", "echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three; exit 3"] }));
    const types = all.map((f) => f.type);
    assert.equal(types[0], "started");
    assert.equal(types.at(-1), "exit");
    assert.equal(types.filter((t) => t === "exit").length, 1);
    const output = all.filter((f) => f.type === "stdout" || f.type === "stderr").map((f) => `${f.type}:${f.type === "stdout" ? f.stdout : f.stderr}`);
    assert.deepEqual(output, ["stdout:one\n", "stderr:two\n", "stdout:three\n"]);
    assert.equal(all.at(-1)?.exit_code, 3);
    assert.ok(all[0]?.pid && all[0].started_at, "started carries pid and started_at");
    assert.ok(all.at(-1)?.ended_at, "exit carries ended_at");
    for (const frame of all.slice(0, -1)) assert.equal(frame.exit_code, 0, "only the exit frame carries a non-zero exit code");
  });

  test("stdin streams into the command (cat echoes it back)", async () => {
    const input = Readable.from(["first line\n", "second line\n"]);
    const all = await frames(daemon.client.exec(hostname, { cmd: "cat", stdin: input }));
    const out = all
      .filter((f) => f.type === "stdout")
      .map((f) => f.stdout)
      .join("");
    assert.equal(out, "first line\nsecond line\n");
    assert.equal(all.at(-1)?.exit_code, 0);
  });

  test("arguments, environment and paths beyond ASCII reach the command intact", async () => {
    const result = await daemon.client.execBuffered(hostname, {
      cmd: "sh",
      args: ["-c", 'mkdir -p "/tmp/$DIR" && cd "/tmp/$DIR" && echo "$1 $(pwd)"', "sh", "héllo 日本 ✓"],
      env: { DIR: "répertoire 目录" },
    });
    assert.equal(result.exit_code, 0, result.stderr + (result.error ?? ""));
    assert.equal(result.stdout, "héllo 日本 ✓ /tmp/répertoire 目录\n");
  });

  test("stdio=base64 carries arbitrary bytes", async () => {
    const result = await daemon.client.execBuffered(hostname, { cmd: "printf", args: ["\\377\\000\\001abc"], stdio: "base64" });
    assert.equal(result.encoding, "base64");
    assert.deepEqual([...Buffer.from(result.stdout, "base64")], [0xff, 0x00, 0x01, 0x61, 0x62, 0x63]);
  });

  test("shell= runs cmd as a script with -lc", async () => {
    const result = await daemon.client.execBuffered(hostname, { cmd: "echo $((6 * 7)) | tr 4 x", shell: "/bin/sh" });
    assert.equal(result.stdout, "x2\n");
  });

  test("logs return the tail of the serial console", async () => {
    const all = await daemon.client.logs(hostname, 0);
    assert.equal(all.hostname, hostname);
    assert.match(all.content, /corral-boot: sbox-1 is up after [\d.]+s, starting the agent\n/);
    assert.match(all.content, /corral-agent: .* serving on \/dev\/vport\d+p\d+ \((relay|thread-pool)\)\n/);
    assert.equal(all.content.includes("\r"), false, "console CRLF is turned into LF");
    const lastTwo = await daemon.client.logs(hostname, 2);
    assert.equal(lastTwo.lines, 2);
    assert.deepEqual(lastTwo.content.trimEnd().split("\n"), all.content.trimEnd().split("\n").slice(-2));
    const byDefault = await daemon.client.logs(hostname);
    assert.equal(byDefault.lines, 20);
  });

  test("describe shows the VM with its image version and network", async () => {
    const vm = await daemon.client.describe(hostname);
    assert.equal(vm.hostname, hostname);
    assert.equal(vm.state, "running");
    assert.match(vm.image, /^base@[0-9a-f]{12}$/);
    assert.equal((vm as unknown as { network: { mode: string } }).network.mode, "user");
  });

  test("tag filters select nodes", async () => {
    assert.equal((await daemon.client.nodes({ tag: "suite=sandbox" })).length, 1);
    assert.equal((await daemon.client.nodes({ tagPrefix: "suite=" })).length, 1);
    assert.equal((await daemon.client.nodes({ tag: "suite=other" })).length, 0);
    assert.equal((await daemon.client.groupNodes("sbox", { tag: "suite=sandbox" })).length, 1);
  });

  test("userdata runs once and wait=userdata returns after it finished", async () => {
    const created = await daemon.client.createNode(
      "sbox",
      { userdata: "#!/bin/sh\nsleep 1\necho made-by-userdata > /root/proof\nexit 3\n" },
      { wait: "userdata", timeout: "120s" },
    );
    const health = await daemon.client.health(created.hostname);
    assert.equal(health.userdata_ran, true);
    assert.equal(health.userdata_exit_code, 3);
    const proof = await daemon.client.execBuffered(created.hostname, { cmd: "cat", args: ["/root/proof"] });
    assert.equal(proof.stdout, "made-by-userdata\n");
    await daemon.client.deleteNode("sbox", created.hostname);
  });

  test("two creates at once get distinct hostnames", async () => {
    const [a, b] = await Promise.all([
      daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "120s" }),
      daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "120s" }),
    ]);
    assert.notEqual(a.hostname, b.hostname);
    const [ua, ub] = await Promise.all([daemon.client.execBuffered(a.hostname, { cmd: "hostname" }), daemon.client.execBuffered(b.hostname, { cmd: "hostname" })]);
    assert.equal(ua.stdout.trim(), a.hostname);
    assert.equal(ub.stdout.trim(), b.hostname);
    await Promise.all([daemon.client.deleteNode("sbox", a.hostname), daemon.client.deleteNode("sbox", b.hostname)]);
  });

  test("delete removes the QEMU process, the overlay disk and the sockets", async () => {
    const created = await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "120s" });
    const dir = join(daemon.stateDir, "vms", created.hostname);
    assert.ok(existsSync(join(dir, "disk.qcow2")));
    assert.ok(existsSync(join(dir, "agent.sock")));
    assert.equal(qemuPids(daemon.stateDir).length, 2, "sbox-1 and the new VM run");
    const deleted = await daemon.client.deleteNode("sbox", created.hostname);
    assert.deepEqual(deleted, { message: "Node deleted", disk_removed: "true" });
    assert.equal(existsSync(dir), false);
    assert.equal(qemuPids(daemon.stateDir).length, 1);
    assert.deepEqual(await readdir(join(daemon.stateDir, "vms")), ["sbox-1"]);
    await assert.rejects(daemon.client.health(created.hostname), { status: 404, code: "vm_not_found" });
  });

  test("a sandbox that powers itself off is removed with its disk", async () => {
    const created = await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "120s" });
    await daemon.client.execBuffered(created.hostname, { cmd: "sh", args: ["-c", "sync; poweroff -f"] }).catch(() => undefined);
    const deadline = Date.now() + 30_000;
    while ((await daemon.client.nodes()).some((n) => n.hostname === created.hostname)) {
      assert.ok(Date.now() < deadline, "the sandbox disappears after it powers off");
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(existsSync(join(daemon.stateDir, "vms", created.hostname)), false);
  });

  test("graceful daemon stop removes every sandbox and its QEMU", async () => {
    const before = qemuPids(daemon.stateDir);
    assert.ok(before.length >= 1);
    const code = await daemon.stop();
    assert.equal(code, 0);
    assert.deepEqual(qemuPids(daemon.stateDir), []);
    assert.deepEqual(await readdir(join(daemon.stateDir, "vms")), []);
  });
});
