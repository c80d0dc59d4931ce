// The contract every engine behind src/engine/machine.ts keeps, written once as a function over an engine
// factory and run for each engine in ENGINES (a second engine adds one line). Real machines, a real guest
// (the `base` image): a cold boot, pause and resume (the guest's clock stops), the NIC's link, a state
// saved and loaded into a new machine with the RAM left in a template's file (the guest's memory survives:
// a file on a tmpfs), a reset (the guest boots again: the tmpfs is empty), the guest's own power-off, a
// shutdown whose grace runs out (killed), and a machine re-attached by a second engine instance from what a
// daemon records (pid, start time, files), which it can pause and shut down. Each exit carries its cause.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { hostTscKhz, kernelCmdline, QEMU_BINARY, QemuEngine, type Engine, type Machine, type MachineFiles, type MachineSpec } from "../../src/engine/index.ts";
import { corralHome, createOverlay, ImageStore, type ImageVersion } from "../../src/image/index.ts";
import { userNetwork } from "../../src/net/user-network.ts";
import { AgentClient } from "../../src/daemon/agent/agent-client.ts";
import { collectExec } from "../../src/daemon/exec/collect-exec.ts";
import { RUNTIME_BUSYBOX } from "../../src/image/guest-runtime-scripts.ts";

const BOOT_DEADLINE_MS = 12 * 60_000;

/** The engines under contract: each with a factory for fresh instances (re-attaching needs a second one). */
const ENGINES: { name: string; make: () => Engine }[] = [{ name: "qemu", make: () => new QemuEngine({ binary: QEMU_BINARY, accel: { accel: "tcg" } }) }];

for (const entry of ENGINES) engineContract(entry.name, entry.make);

function engineContract(name: string, make: () => Engine): void {
  describe(`engine contract: ${name}`, () => {
    const engine = make();
    const caps = engine.capabilities;
    let dir = "";
    let image: ImageVersion;
    const machines: Machine[] = [];
    const agents: AgentClient[] = [];
    // Machines are detached processes the engine does not keep the loop alive for.
    let keepAlive: NodeJS.Timeout | undefined;

    before(async () => {
      keepAlive = setInterval(() => undefined, 1000);
      dir = await mkdtemp(join(tmpdir(), "corral-engine-contract-"));
      image = await new ImageStore(corralHome().images).resolve("base");
    });

    after(async () => {
      for (const agent of agents) agent.close();
      for (const machine of machines) {
        await machine.kill();
        machine.dispose();
      }
      if (dir) await rm(dir, { recursive: true, force: true });
      clearInterval(keepAlive);
    });

    function filesIn(folder: string): MachineFiles {
      return {
        control: join(folder, "ctl.sock"),
        transcript: join(folder, "ctl.log"),
        log: join(folder, "engine.log"),
        pidFile: join(folder, "pid"),
        stateSocket: join(folder, "state.sock"),
      };
    }

    async function machineFolder(label: string): Promise<string> {
      const folder = join(dir, label);
      await mkdir(folder, { recursive: true, mode: 0o700 });
      return folder;
    }

    function specFor(folder: string, hostname: string, extra: Partial<MachineSpec> = {}): MachineSpec {
      const network = userNetwork("52:54:00:c0:47:01");
      return {
        cpus: 1,
        memoryMiB: 256,
        kernel: image.kernel,
        initrd: image.initrd,
        cmdline: kernelCmdline({ accel: "tcg", hostname, network, tscKhz: hostTscKhz() }),
        disk: { path: join(folder, "disk.qcow2"), format: "qcow2" },
        serialLog: join(folder, "serial.log"),
        agentSocket: join(folder, "agent.sock"),
        network,
        ...extra,
      };
    }

    function track(machine: Machine): Machine {
      machines.push(machine);
      return machine;
    }

    /** Connects to the machine's agent (after a boot, a reset or a restore) and gives it a name. */
    async function agentOf(machine: Machine, socket: string, client?: AgentClient): Promise<AgentClient> {
      const agent = client ?? new AgentClient(socket);
      if (!client) agents.push(agent);
      await agent.waitForConnection(AbortSignal.timeout(BOOT_DEADLINE_MS), () => machine.running);
      await agent.applyIdentity({ hostname: "contract", time_ms: Date.now() }, AbortSignal.timeout(120_000));
      return agent;
    }

    async function sh(agent: AgentClient, script: string): Promise<{ exit: number; out: string }> {
      const { stream: frames } = await agent.exec(
        { cmd: RUNTIME_BUSYBOX, args: ["sh", "-c", script], env: [], stdin: false, stdio: "text" },
        undefined,
        AbortSignal.timeout(120_000),
      );
      const result = await collectExec(frames, "text");
      return { exit: result.exit_code, out: (result.stdout + result.stderr).trim() };
    }

    async function uptimeMs(agent: AgentClient): Promise<number> {
      const { out } = await sh(agent, "cat /proc/uptime");
      return Math.round(Number(out.split(" ")[0]) * 1000);
    }

    // Shared by the tests below, in order: a cold-booted machine whose RAM is a file (it becomes the
    // template), the state it saved, and a copy of its disk as it was then.
    const token = randomBytes(8).toString("hex");
    let first: Machine | undefined;
    let firstAgent: AgentClient | undefined;
    let firstFolder = "";
    let ramFile = "";
    let stateFile = "";
    let savedDisk = "";

    test("a cold boot from a spec: a live pid, the capabilities the engine declares, the guest's agent answers", { timeout: BOOT_DEADLINE_MS + 60_000 }, async () => {
      firstFolder = await machineFolder("first");
      ramFile = join(firstFolder, "ram");
      const spec = specFor(firstFolder, "contract-1", caps.memoryTemplates ? { memoryFile: { path: ramFile, shared: true } } : {});
      await createOverlay(image, spec.disk.path);
      first = track(await engine.start(spec, filesIn(firstFolder)));
      assert.ok(first.pid > 0);
      assert.equal(first.running, true);
      assert.ok(first.startTime.length > 0, "a start time to re-attach by");
      assert.equal(first.engine, engine.name);
      assert.deepEqual(first.capabilities, caps);
      firstAgent = await agentOf(first, spec.agentSocket);
      assert.deepEqual(await first.runState(), { running: true, detail: "running" });
      // The memory the state must carry: a file on a tmpfs, which no disk holds.
      const wrote = await sh(firstAgent, `mkdir -p /run/contract && mount -t tmpfs contract /run/contract && echo ${token} > /run/contract/marker && cat /run/contract/marker`);
      assert.deepEqual(wrote, { exit: 0, out: token });
    });

    test("pause stops the vCPUs and the guest's clock; resume runs them on; both are reported as events", { timeout: 5 * 60_000 }, async () => {
      assert.ok(first && firstAgent, "the first machine booted");
      const before = await uptimeMs(firstAgent);
      const events: string[] = [];
      const off = first.onEvent((event) => events.push(event.type));
      await first.pause();
      const pausedAt = performance.now();
      assert.equal((await first.runState()).running, false);
      await sleep(8000);
      const pausedFor = performance.now() - pausedAt;
      await first.resume();
      assert.equal((await first.runState()).running, true);
      const afterResume = await uptimeMs(firstAgent);
      off();
      // Had the clock run on, the guest would have aged by at least the whole pause.
      assert.ok(afterResume - before < pausedFor, `the guest aged ${afterResume - before} ms across a ${Math.round(pausedFor)} ms pause`);
      assert.deepEqual(events, ["stopped", "resumed"]);
    });

    test("the NIC's link goes down and up while the machine runs", { skip: !caps.linkControl && "no link control", timeout: 5 * 60_000 }, async () => {
      assert.ok(first && firstAgent, "the first machine booted");
      assert.equal(first.link, "up");
      await first.setLink(false);
      assert.equal(first.link, "down");
      assert.equal((await sh(firstAgent, "cat /sys/class/net/eth0/carrier")).out, "0");
      await first.setLink(true);
      assert.equal((await sh(firstAgent, "cat /sys/class/net/eth0/carrier")).out, "1");
    });

    test("the state is saved with the vCPUs stopped (its disk copied meanwhile) and the machine left stopped", {
      skip: !caps.saveState && "no saved states",
      timeout: 5 * 60_000,
    }, async () => {
      assert.ok(first, "the first machine booted");
      stateFile = join(dir, "saved.state");
      savedDisk = join(dir, "saved-disk.qcow2");
      if (caps.memoryTemplates) await first.useMemoryTemplate();
      const machine = first;
      // The disk a loaded state resumes next to must be the disk as it was when the state was saved.
      await machine.withVcpusStopped(
        async () => {
          await copyFile(join(firstFolder, "disk.qcow2"), savedDisk);
          await machine.saveState(stateFile, { after: "stay" });
        },
        { resume: "on-failure" },
      );
      assert.equal((await first.runState()).running, false, "left stopped: its RAM file must not change any more");
      await assert.rejects(first.saveState(join(dir, "no-such-dir", "x.state"), { after: "resume" }), "a save that cannot write fails");
      assert.equal((await first.runState()).running, false, "a failed save leaves stopped vCPUs stopped");
    });

    test("a shutdown whose grace runs out kills the machine, and the exit says so", { timeout: 2 * 60_000 }, async () => {
      assert.ok(first, "the first machine booted");
      // A machine that cannot answer: its process is frozen, so it cannot end by itself.
      process.kill(first.pid, "SIGSTOP");
      const exit = await first.shutdown({ graceMs: 2000 });
      assert.equal(exit.cause, "killed");
      assert.equal(exit.signal, "SIGKILL");
      assert.equal(first.running, false);
      first.dispose();
    });

    /** A new machine from the saved state, on a copy of the disk saved with it. */
    async function restore(label: string): Promise<{ machine: Machine; agent: AgentClient; folder: string }> {
      const folder = await machineFolder(label);
      await copyFile(savedDisk, join(folder, "disk.qcow2"));
      const spec = specFor(folder, "contract-1", { incoming: true, ...(caps.memoryTemplates ? { memoryFile: { path: ramFile, shared: false } } : {}) });
      const machine = track(await engine.start(spec, filesIn(folder)));
      if (caps.memoryTemplates) await machine.useMemoryTemplate();
      await machine.loadState(stateFile);
      assert.equal((await machine.runState()).running, true, "a loaded state runs");
      return { machine, agent: await agentOf(machine, spec.agentSocket), folder };
    }

    test("a state loaded into a new machine (from a memory template) runs on with the guest's memory", {
      skip: !caps.saveState && "no saved states",
      timeout: 10 * 60_000,
    }, async () => {
      const { machine, agent } = await restore("second");
      assert.deepEqual(await sh(agent, "cat /run/contract/marker"), { exit: 0, out: token });
      // Reset: the guest boots again in the same process, so what lived only in memory is gone.
      const resets: string[] = [];
      const off = machine.onEvent((event) => resets.push(event.type));
      await machine.reset();
      off();
      assert.ok(resets.includes("reset"), `a reset event: ${resets.join(",")}`);
      assert.equal(machine.running, true, "a reset does not end the machine");
      agent.reset();
      await agentOf(machine, "", agent);
      const after = await sh(agent, "cat /run/contract/marker");
      assert.notEqual(after.exit, 0, `the tmpfs is gone after the reset: ${after.out}`);
      // The guest's own power-off ends the machine, and the exit says it was the guest.
      void sh(agent, "sync; poweroff -f").catch(() => undefined);
      const exit = await machine.exited;
      assert.equal(exit.cause, "guest");
      assert.equal(exit.code, 0);
    });

    test("a second engine re-attaches to a machine from what a daemon records, pauses it and shuts it down", {
      skip: !caps.reattach && "no re-attach",
      timeout: 10 * 60_000,
    }, async () => {
      const { machine, agent, folder } = await restore("third");
      const recorded = { pid: machine.pid, startTime: machine.startTime, files: filesIn(folder) };
      // The first daemon goes away: its control connection closes, the machine runs on.
      machine.dispose();
      const other = make();
      assert.equal(await other.reattach({ ...recorded, startTime: `${recorded.startTime}0` }), undefined, "a recycled pid is not the machine");
      const again = await other.reattach(recorded);
      assert.ok(again, "found again");
      track(again);
      assert.equal(again.pid, machine.pid);
      assert.equal(again.running, true);
      assert.equal(again.link, "unknown", "the link is whatever the last daemon left");
      await again.pause();
      assert.equal((await again.runState()).running, false);
      await again.resume();
      assert.deepEqual(await sh(agent, "cat /run/contract/marker"), { exit: 0, out: token });
      const exit = await again.shutdown({ graceMs: 60_000 });
      assert.equal(exit.cause, "requested", "ended when asked, within its grace");
      assert.equal(again.running, false);
      assert.deepEqual(other.processesUnder(folder), [], "no process of this engine is left under its folder");
    });
  });
}
