// The peer: the same VM booted by plain QEMU, driven by the smallest script that can tell its agent
// answered. Same kernel, image, overlay and QEMU arguments as the daemon uses; no daemon, no database, no
// HTTP API. What Corral adds on top of this is its control plane's overhead.
import { constants as h2, connect as h2connect, type ClientHttp2Session } from "node:http2";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { agentHandshake } from "../src/daemon/agent/handshake.ts";
import { buildQemuArgs, hostTscKhz, kernelCmdline, QemuProcess, type Accel } from "../src/engine/qemu/index.ts";
import { createOverlay, type ImageVersion } from "../src/image/index.ts";
import { userNetwork } from "../src/net/user-network.ts";
import { AGENT_PATHS, EXEC_SPEC_HEADER } from "../src/protocol/agent.ts";

export interface PlainVm {
  /** Milliseconds from "go" (before the overlay is made) to the agent's first answer. */
  bootMs: number;
  session: ClientHttp2Session;
  stop(): Promise<void>;
}

export function request(session: ClientHttp2Session, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers);
    let body = "";
    stream.setEncoding("utf8");
    stream.on("data", (c: string) => (body += c));
    stream.on("end", () => resolve(body));
    stream.on("error", reject);
    stream.end();
  });
}

export async function bootPlain(image: ImageVersion, dir: string, accel: Accel, cpus: number, memoryMiB: number): Promise<PlainVm> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const started = performance.now();
  const disk = join(dir, "disk.qcow2");
  await createOverlay(image, disk);
  const network = userNetwork("52:54:00:be:ac:00");
  const args = buildQemuArgs({
    accel,
    cpus,
    memoryMiB,
    kernel: image.kernel,
    initrd: image.initrd,
    cmdline: kernelCmdline({ accel, hostname: "plain", network, tscKhz: hostTscKhz() }),
    disk: { path: disk, format: "qcow2" },
    serialLog: join(dir, "serial.log"),
    qmpSocket: join(dir, "qmp.sock"),
    agentSocket: join(dir, "agent.sock"),
    pidFile: join(dir, "qemu.pid"),
    network,
  });
  const proc = await QemuProcess.spawn("qemu-system-x86_64", args, join(dir, "qemu.log"));
  const deadline = AbortSignal.timeout(120_000);
  let session: ClientHttp2Session | undefined;
  while (!session) {
    try {
      const { socket } = await agentHandshake(join(dir, "agent.sock"), deadline);
      session = h2connect("http://plain", { createConnection: () => socket });
    } catch (err) {
      if (deadline.aborted) throw err;
      await sleep(5);
    }
  }
  await request(session, { [h2.HTTP2_HEADER_METHOD]: "GET", [h2.HTTP2_HEADER_PATH]: AGENT_PATHS.health });
  const bootMs = performance.now() - started;
  const live = session;
  return {
    bootMs,
    session: live,
    async stop() {
      live.destroy();
      proc.kill("SIGKILL");
      await proc.exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** One exec of `true` straight to the agent: the floor for the daemon's exec round trip. */
export async function plainExecTrue(session: ClientHttp2Session): Promise<number> {
  const started = performance.now();
  const body = await request(session, {
    [h2.HTTP2_HEADER_METHOD]: "POST",
    [h2.HTTP2_HEADER_PATH]: AGENT_PATHS.exec,
    [EXEC_SPEC_HEADER]: JSON.stringify({ cmd: "true", args: [], env: [], stdin: false, stdio: "text" }),
  });
  if (!body.includes('"type":"exit"')) throw new Error(`The agent did not finish the command: ${body}`);
  return performance.now() - started;
}
