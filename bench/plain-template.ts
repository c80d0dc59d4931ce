// The peer for template creation: the same template snapshot (RAM in a file, device state in a small
// file) made and restored by plain QEMU, driven by the smallest script that can tell a clone's agent
// answered. No daemon, no database, no HTTP API: the physical floor of "create from a template" here.
import { constants as h2, connect as h2connect, type ClientHttp2Session } from "node:http2";
import { createReadStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { agentHandshake } from "../src/daemon/agent/handshake.ts";
import { buildQemuArgs, hostTscKhz, kernelCmdline, QemuProcess, QmpClient, saveVmState, type Accel, type QemuSpec } from "../src/engine/qemu/index.ts";
import { createOverlay, type ImageVersion } from "../src/image/index.ts";
import { run } from "../src/util/run.ts";
import { userNetwork } from "../src/net/user-network.ts";
import { request } from "./plain-qemu.ts";
import { AGENT_PATHS } from "../src/protocol/agent.ts";

export interface PlainTemplate {
  dir: string;
  spec: QemuSpec;
  stateFile: string;
}

async function connectAgent(socketPath: string, deadline: AbortSignal): Promise<ClientHttp2Session> {
  for (;;) {
    try {
      const { socket } = await agentHandshake(socketPath, deadline);
      const session = h2connect("http://plain", { createConnection: () => socket });
      await request(session, { [h2.HTTP2_HEADER_METHOD]: "GET", [h2.HTTP2_HEADER_PATH]: AGENT_PATHS.health });
      return session;
    } catch (err) {
      if (deadline.aborted) throw err;
      await sleep(5);
    }
  }
}

async function waitForSocket(proc: QemuProcess, path: string): Promise<QmpClient> {
  for (;;) {
    try {
      return await QmpClient.connect(path);
    } catch (err) {
      if (!proc.running) throw err;
      await sleep(5);
    }
  }
}

/** QEMU processes are unref'ed (they outlive us): keep the event loop alive while waiting for one. */
async function exitOf(proc: QemuProcess): Promise<void> {
  const keepAlive = setInterval(() => undefined, 1000);
  await proc.exited.finally(() => clearInterval(keepAlive));
}

/** Boots a VM whose RAM is a shared file, waits for its agent, and saves its device state beside the file. */
export async function makePlainTemplate(image: ImageVersion, dir: string, accel: Accel, cpus: number, memoryMiB: number): Promise<PlainTemplate> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const network = userNetwork("52:54:00:be:ac:01");
  const spec: QemuSpec = {
    accel,
    cpus,
    memoryMiB,
    kernel: image.kernel,
    initrd: image.initrd,
    cmdline: kernelCmdline({ accel, hostname: "plain-template", network, tscKhz: hostTscKhz() }),
    disk: { path: join(dir, "disk.qcow2"), format: "qcow2" },
    serialLog: join(dir, "serial.log"),
    qmpSocket: join(dir, "qmp.sock"),
    agentSocket: join(dir, "agent.sock"),
    pidFile: join(dir, "qemu.pid"),
    network,
    memoryFile: { path: join(dir, "ram"), shared: true },
  };
  await createOverlay(image, spec.disk.path);
  const proc = await QemuProcess.spawn("qemu-system-x86_64", buildQemuArgs(spec), join(dir, "qemu.log"));
  const qmp = await waitForSocket(proc, spec.qmpSocket);
  const session = await connectAgent(spec.agentSocket, AbortSignal.timeout(180_000));
  await qmp.stop();
  await qmp.migrateSetCapabilities([{ capability: "x-ignore-shared", state: true }]);
  const stateFile = join(dir, "state");
  await saveVmState(qmp, stateFile, join(dir, "migrate.sock"));
  session.destroy();
  await qmp.quit().catch(() => undefined);
  await exitOf(proc);
  return { dir, spec, stateFile };
}

/**
 * One clone: a fresh overlay on the template's disk, QEMU waiting for a state (`-incoming defer`), the state
 * loaded with `x-ignore-shared` (the RAM is the file, mapped privately), its agent answering. Returns the milliseconds from "go".
 */
export async function restorePlain(template: PlainTemplate, dir: string): Promise<{ ms: number; stop: () => Promise<void> }> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const started = performance.now();
  const disk = join(dir, "disk.qcow2");
  await run("qemu-img", ["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", template.spec.disk.path, disk]);
  const migrationSocket = join(dir, "in.sock");
  const spec: QemuSpec = {
    ...template.spec,
    disk: { path: disk, format: "qcow2" },
    serialLog: join(dir, "serial.log"),
    qmpSocket: join(dir, "qmp.sock"),
    agentSocket: join(dir, "agent.sock"),
    pidFile: join(dir, "qemu.pid"),
    memoryFile: { path: join(template.dir, "ram"), shared: false },
  };
  const proc = await QemuProcess.spawn("qemu-system-x86_64", buildQemuArgs({ ...spec, incoming: true }), join(dir, "qemu.log"));
  const qmp = await waitForSocket(proc, spec.qmpSocket);
  await qmp.migrateSetCapabilities([{ capability: "x-ignore-shared", state: true }]);
  await qmp.migrateIncoming(`unix:${migrationSocket}`);

  for (;;) {
    const sent = await new Promise<boolean>((resolve) => {
      const socket = connect(migrationSocket);
      socket.once("connect", () => {
        createReadStream(template.stateFile).pipe(socket);
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (sent) break;
    if (!proc.running) throw new Error("QEMU exited");
    await sleep(2);
  }
  for (;;) {
    const { status } = await qmp.queryStatus();
    if (status === "running") break;
    if (status === "paused" || status === "postmigrate") {
      await qmp.cont();
      break;
    }
    await sleep(1);
  }
  const session = await connectAgent(spec.agentSocket, AbortSignal.timeout(60_000));
  const ms = performance.now() - started;
  return {
    ms,
    async stop() {
      session.destroy();
      qmp.close();
      proc.kill("SIGKILL");
      await exitOf(proc);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
