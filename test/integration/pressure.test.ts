// Disk and memory pressure: a guest that fills the host's disk freezes and the API says so (507 instead of
// hangs, a resume that really resumes, also across a daemon kill -9); host-side writes on a full disk answer
// 507 and leave nothing half-written; admission control under concurrent creates and a memory reserve; a
// wedged agent shows as unresponsive and recovers; a template whose RAM file a small tmpfs cannot back is not
// built (clones there died of SIGBUS), and a VM whose QEMU dies of SIGBUS stays, failed, with the reason.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { readMemAvailable } from "../../src/daemon/admission.ts";
import type { AgentVm } from "../../src/protocol/ttstack-agent.ts";
import type { NodeInfo } from "../../src/protocol/slicer.ts";
import type { TemplateInfoBody } from "../../src/protocol/templates-api.ts";
import { corral } from "../helpers/cli-process.ts";
import { qemuPids, TestDaemon } from "../helpers/daemon-process.ts";
import { SmallFilesystem } from "../helpers/small-fs.ts";
import { until } from "../helpers/until.ts";

const MiB = 1024 * 1024;

interface Answer<T = unknown> {
  status: number;
  body: T;
  headers: Headers;
}

/** A raw call (status, headers and body as they came), with a deadline that turns a hang into a failure. */
async function call<T = Record<string, unknown>>(daemon: TestDaemon, method: string, path: string, body?: unknown, deadlineMs = 60_000): Promise<Answer<T>> {
  const response = await fetch(`${daemon.url}${path}`, {
    method,
    signal: AbortSignal.timeout(deadlineMs),
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
  });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // text/plain answers (pause, resume)
  }
  return { status: response.status, body: parsed as T, headers: response.headers };
}

type Described = NodeInfo & { state: string };

const describeVm = async (daemon: TestDaemon, hostname: string): Promise<Described> => (await call<Described>(daemon, "GET", `/vm/${hostname}`)).body;

async function sh(daemon: TestDaemon, hostname: string, script: string): Promise<string> {
  const result = await daemon.client.execBuffered(hostname, { cmd: "sh", args: ["-c", script] });
  assert.equal(result.exit_code, 0, `${script}: ${result.stderr}`);
  return result.stdout.trim();
}

const DISK_CONFIG = (minFreeMiB: number): string => `config:
  admission:
    min_free_disk_mb: ${minFreeMiB}
  host_groups:
    - name: sbox
      image: base
      vcpu: 1
      ram_mb: 256
      template: false
`;

describe("a full disk", { timeout: 900_000 }, () => {
  let fs: SmallFilesystem;
  let daemon: TestDaemon;
  let vm: string;
  let fillJob: string;
  let stateDir: string;

  before(async () => {
    fs = await SmallFilesystem.ext4(400);
    // Space to give back later: a ballast for the resume, a spare for the daemon's restart.
    await fs.reserve("ballast", 96);
    await fs.reserve("spare", 4);
    stateDir = join(fs.mount, "state");
    daemon = await TestDaemon.create(DISK_CONFIG(0), { stateDir });
    await daemon.start();
  });

  after(async () => {
    await daemon?.stop().catch(() => undefined);
    await fs?.dispose();
  });

  test("a guest that fills the host's disk is frozen: the API says so, agent calls answer 507 at once, resume answers 507", async () => {
    await daemon.client.secrets.create("kept", { data: "stored before" });
    vm = (await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "180s" })).hostname;
    await sh(daemon, vm, "echo before > /root/before; sync");
    assert.equal((await describeVm(daemon, vm)).health, "ok");

    // More than the host has free, less than what it will have once the ballast is gone.
    const count = fs.freeMiB() + 48;
    fillJob = (await daemon.client.bg.exec(vm, { cmd: "dd", args: ["if=/dev/zero", "of=/root/fill", "bs=1M", `count=${count}`, "conv=fsync"] })).exec_id;

    const frozen = await until(
      async () => {
        const node = await describeVm(daemon, vm);
        return node.health === "disk_full" ? node : undefined;
      },
      "the VM to show as frozen by its disk",
      300_000,
      500,
    );
    assert.equal(frozen.status, "Paused", "Slicer's status: the vCPUs are stopped, as after a pause");
    assert.equal(frozen.state, "paused");
    assert.match(frozen.health_detail ?? "", /No space left on device/);
    assert.ok(frozen.health_detail?.includes(stateDir), "the detail names the state directory");
    assert.ok(frozen.health_since);

    const listed = (await daemon.client.nodes()).find((n) => n.hostname === vm);
    assert.equal(listed?.health, "disk_full");
    assert.equal((await daemon.client.groupNodes("sbox"))[0]?.health, "disk_full");
    const agentVm = (await call<{ data: AgentVm[] }>(daemon, "GET", "/api/vms")).body.data.find((v) => v.id === vm);
    assert.deepEqual([agentVm?.state, agentVm?.status, agentVm?.health], ["paused", "paused", "disk_full"]);
    assert.match(await daemon.client.metrics(), /^corral_vm_health\{health="disk_full"\} 1$/m);

    // Before: exec hung for as long as the VM stayed frozen. The deadline turns a hang into a failure.
    const exec = await call(daemon, "POST", `/vm/${vm}/exec?buffered=true&cmd=true`, undefined, 30_000);
    assert.equal(exec.status, 507);
    assert.equal(exec.body.code, "insufficient_storage");
    assert.match(String(exec.body.error), new RegExp(`VM "${vm}" is frozen`));
    assert.equal((await call(daemon, "GET", `/vm/${vm}/health`, undefined, 30_000)).status, 507);
    assert.equal((await call(daemon, "GET", `/vm/${vm}/fs/readdir?path=/root`, undefined, 30_000)).status, 507);

    // Before: 200 without resuming anything.
    const resume = await call(daemon, "POST", `/vm/${vm}/resume`);
    assert.equal(resume.status, 507);
    assert.equal(resume.body.code, "insufficient_storage");
    assert.match(String(resume.body.error), /still fail \(No space left on device\)/);
    assert.equal((await describeVm(daemon, vm)).health, "disk_full", "still frozen");
  });

  test("host-side writes on the full disk answer 507 and leave nothing half-written", async () => {
    await fs.fillUp("filler");
    const vmsBefore = readdirSync(join(stateDir, "vms")).sort();

    const create = await call(daemon, "POST", "/hostgroup/sbox/nodes", {});
    assert.equal(create.status, 507, JSON.stringify(create.body));
    assert.equal(create.body.code, "insufficient_storage");
    assert.ok(String(create.body.error).includes(stateDir), String(create.body.error));
    assert.deepEqual(
      (await daemon.client.nodes()).map((n) => n.hostname),
      [vm],
      "no record of the failed create",
    );
    assert.deepEqual(readdirSync(join(stateDir, "vms")).sort(), vmsBefore, "no folder of the failed create");

    const secret = await call(daemon, "POST", "/secrets", { name: "late", data: Buffer.alloc(256 * 1024, 7).toString("base64") });
    assert.equal(secret.status, 507, JSON.stringify(secret.body));
    assert.match(String(secret.body.error), /Cannot write secret "late"/);
    const update = await call(daemon, "PATCH", "/secrets/kept", { data: Buffer.alloc(256 * 1024, 8).toString("base64") });
    assert.equal(update.status, 507);
    assert.deepEqual(
      (await daemon.client.secrets.list()).map((s) => s.name),
      ["kept"],
    );
    assert.deepEqual(readdirSync(join(stateDir, "secrets")), ["kept"], "no temporary file left");
    assert.ok(
      readFileSync(join(stateDir, "secrets", "kept"))
        .toString()
        .endsWith("\nstored before"),
      "the stored secret is as it was",
    );
  });

  test("after a daemon kill -9 the frozen VM is found frozen again; creates are refused while the disk is short", async () => {
    await fs.release("filler");
    await fs.release("spare");
    await daemon.kill9();
    await daemon.reconfigure(DISK_CONFIG(32));
    await daemon.start();
    const node = await describeVm(daemon, vm);
    assert.deepEqual([node.status, node.state, node.health], ["Paused", "paused", "disk_full"], "learned from QEMU's run state, not from the lost event");
    assert.match(daemon.log, /VM found frozen by QEMU/);

    const create = await call(daemon, "POST", "/hostgroup/sbox/nodes", {});
    assert.equal(create.status, 507);
    assert.match(String(create.body.error), /has \d+ MiB free, less than the 32 MiB kept for VMs' disks \(admission\.min_free_disk_mb\)/);
    assert.deepEqual(
      (await daemon.client.nodes()).map((n) => n.hostname),
      [vm],
    );
    const info = (await call<{ pressure: { disk_pressure: boolean } }>(daemon, "GET", "/info")).body;
    assert.equal(info.pressure.disk_pressure, true);
  });

  test("with room again, resume really resumes: the guest finishes its writes and nothing stored before is lost", async () => {
    await fs.release("ballast");
    const resume = await call(daemon, "POST", `/vm/${vm}/resume`);
    assert.equal(resume.status, 200, JSON.stringify(resume.body));
    const running = await until(
      async () => {
        const node = await describeVm(daemon, vm);
        return node.health === "ok" ? node : undefined;
      },
      "the VM to be healthy again",
      120_000,
      500,
    );
    assert.deepEqual([running.status, running.state], ["Running", "running"]);

    const done = await daemon.client.bg.wait(vm, fillJob, 120);
    assert.equal(done.timed_out, false);
    assert.equal(done.exit_code, 0, "dd wrote all it was asked to");
    assert.equal(await sh(daemon, vm, "cat /root/before"), "before");
    assert.equal(await sh(daemon, vm, "cat /run/corral/secrets/kept"), "stored before");
    assert.deepEqual(
      (await daemon.client.secrets.list()).map((s) => s.name),
      ["kept"],
    );
    await daemon.client.deleteNode("sbox", vm);
  });
});

describe("admission control and health", { timeout: 900_000 }, () => {
  let daemon: TestDaemon;
  const reserveConfig = (reserveMiB?: number): string => `config:
  health_check:
    interval: 1s
    timeout: 1s
    failures: 2
${reserveMiB === undefined ? "" : `  admission:\n    memory_reserve_mb: ${reserveMiB}\n`}  host_groups:
    - name: sbox
      image: base
      vcpu: 1
      ram_mb: 256
      template: false
      max_vms: 2
`;

  before(async () => {
    daemon = await TestDaemon.create(reserveConfig());
    await daemon.start();
  });

  after(async () => {
    await daemon?.dispose();
  });

  test("concurrent creates beyond max_vms: exactly the limit succeed, the others get 429 hostgroup_full", async () => {
    const answers = await Promise.all(Array.from({ length: 6 }, () => call(daemon, "POST", "/hostgroup/sbox/nodes", {})));
    const created = answers.filter((a) => a.status === 201);
    const refused = answers.filter((a) => a.status === 429);
    assert.equal(created.length, 2, JSON.stringify(answers.map((a) => a.status)));
    assert.equal(refused.length, 4);
    for (const answer of refused) {
      assert.equal(answer.body.code, "hostgroup_full");
      assert.match(String(answer.body.error), /host group "sbox": the group is full \(2 VMs running or starting, max_vms is 2\)/);
      assert.match(answer.headers.get("retry-after") ?? "", /^\d+$/);
    }
    assert.equal((await daemon.client.nodes()).length, 2);
    assert.match(await daemon.client.metrics(), /^corral_admission_refused_total\{code="hostgroup_full",priority="user"\} 4$/m);
  });

  test("a wedged agent shows as unresponsive while its VM runs, and as ok once it answers again", async () => {
    const [vm] = (await daemon.client.nodes()).map((n) => n.hostname);
    assert.ok(vm);
    await until(async () => ((await describeVm(daemon, vm)).health === "ok" ? true : undefined), "the VM to be healthy", 180_000, 500);
    // The agent stops itself (a background job's parent is the agent) for a while, as a wedged guest would.
    await daemon.client.bg.exec(vm, { cmd: "sh", args: ["-c", "sleep 1; kill -STOP $PPID; sleep 40; kill -CONT $PPID"] });
    const wedged = await until(
      async () => {
        const node = await describeVm(daemon, vm);
        return node.health === "unresponsive" ? node : undefined;
      },
      "the agent to be unresponsive",
      60_000,
      250,
    );
    assert.equal(wedged.status, "Running", "the VM still runs: only its agent does not answer");
    assert.match(wedged.health_detail ?? "", /has not answered its liveness checks/);
    assert.match(await daemon.client.metrics(), /^corral_vm_health\{health="unresponsive"\} [12]$/m);
    const shown = await corral(["vm", "show", vm], { CORRAL_URL: daemon.url });
    assert.match(shown.stdout, /\nstatus:\s+Running \(running\)\nhealth:\s+unresponsive: .*has not answered its liveness checks/, shown.stdout + shown.stderr);
    await until(async () => ((await describeVm(daemon, vm)).health === "ok" ? true : undefined), "the agent to answer again", 120_000, 500);
    assert.match(daemon.log, /VM agent answers again/);
  });

  test("memory: with a reserve the next VM cannot fit into, creates answer 429 insufficient_memory with the numbers", async () => {
    for (const node of await daemon.client.nodes()) await daemon.client.deleteNode("sbox", node.hostname);
    await daemon.stop();
    // All the memory the host has now, and a bit: nothing fits, whatever the other tests on the host do.
    await daemon.reconfigure(reserveConfig(Math.ceil(readMemAvailable() / MiB) + 1024));
    await daemon.start();
    const answer = await call(daemon, "POST", "/hostgroup/sbox/nodes", {});
    assert.equal(answer.status, 429, JSON.stringify(answer.body));
    assert.equal(answer.body.code, "insufficient_memory");
    assert.match(
      String(answer.body.error),
      /it may take 320 MiB \(256 MiB of RAM and 64 MiB for QEMU\), the host has \d+ MiB available, \d+ MiB kept for the host \(admission\.memory_reserve_mb\) and 0 MiB held by VMs still starting, leaving 0 MiB/,
    );
    assert.match(answer.headers.get("retry-after") ?? "", /^\d+$/);
    assert.deepEqual(await daemon.client.nodes(), [], "nothing was created");
    const info = (await call<{ pressure: { memory_pressure: boolean } }>(daemon, "GET", "/info")).body;
    assert.equal(info.pressure.memory_pressure, true);
  });
});

describe("a state directory on a small tmpfs", { timeout: 900_000 }, () => {
  let fs: SmallFilesystem;
  let daemon: TestDaemon;

  before(async () => {
    fs = await SmallFilesystem.tmpfs(400);
    daemon = await TestDaemon.create(
      `config:
  admission:
    min_free_disk_mb: 16
  host_groups:
    - name: sbox
      image: base
      vcpu: 1
      ram_mb: 512
`,
      { stateDir: join(fs.mount, "state") },
    );
    await daemon.start();
  });

  after(async () => {
    await daemon?.stop().catch(() => undefined);
    await fs?.dispose();
  });

  test("a template whose RAM file the filesystem cannot back is not built: VMs boot cold and survive using their memory", async () => {
    const template = await until(
      async () => {
        const [info] = (await call<TemplateInfoBody[]>(daemon, "GET", "/templates")).body;
        return info?.error ? info : undefined;
      },
      "the template build to be skipped",
      120_000,
      250,
    );
    assert.equal(template.template_id, null);
    assert.match(template.error ?? "", /^template not built: .*plus 512 MiB for its RAM file/);
    assert.match(daemon.log, /Template build skipped: creating VMs by cold boot/);

    const vm = (await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "180s" })).hostname;
    const [pid] = qemuPids(daemon.stateDir);
    assert.ok(pid);
    assert.doesNotMatch(readFileSync(`/proc/${pid}/cmdline`, "utf8"), /memory-backend-file/, "cold boot: anonymous memory");
    // A clone of a template on this tmpfs died here with SIGBUS: every page its guest touched for the first
    // time was allocated in the template's RAM file, until the tmpfs was full.
    assert.equal(await sh(daemon, vm, "dd if=/dev/zero of=/dev/null bs=300M count=1 2>/dev/null && echo touched"), "touched");
    assert.equal((await describeVm(daemon, vm)).health, "ok");
  });

  test("a VM whose QEMU dies of SIGBUS is failed with the reason, not gone", async () => {
    const [node] = await daemon.client.nodes();
    assert.ok(node);
    const [pid] = qemuPids(daemon.stateDir);
    assert.ok(pid);
    process.kill(pid, "SIGBUS");
    const failed = await until(
      async () => {
        const described = await describeVm(daemon, node.hostname);
        return described.state === "failed" ? described : undefined;
      },
      "the VM to be failed",
      60_000,
      250,
    );
    assert.deepEqual([failed.status, failed.health], ["Stopped", "stopped"]);
    assert.match(failed.health_detail ?? "", /QEMU was killed by SIGBUS/);
    const agentVm = (await call<{ data: AgentVm }>(daemon, "GET", `/api/vms/${node.hostname}`)).body.data;
    assert.match(agentVm.last_error ?? "", /SIGBUS/);
    await daemon.stop();
    await daemon.start();
    assert.equal((await describeVm(daemon, node.hostname)).state, "failed", "kept across a restart, to say why");
    await daemon.client.deleteNode("sbox", node.hostname);
    assert.deepEqual(await daemon.client.nodes(), []);
  });
});
