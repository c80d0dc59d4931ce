// A real daemon (auth on, a unix socket, no template, no VMs to start with) and a real controller (an API
// key) started in the test's own process, for tests that need the apps themselves (their route tables) or
// options a child process cannot be given (shortened request deadlines).
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { startController, type RunningController } from "../../src/controller/controller.ts";
import { startDaemon, type RunningDaemon } from "../../src/daemon/daemon.ts";
import type { RequestDeadlines } from "../../src/http/deadlines.ts";

export const IN_PROCESS_API_KEY = "in-process-test-key-0123456789";

const DAEMON_CONFIG = (socket: string): string => `config:
  api:
    bind_address: 127.0.0.1
    socket: ${socket}
    auth:
      enabled: true
  host_groups:
    - name: sbox
      image: base
      count: 0
      vcpu: 1
      ram_mb: 512
      template: false
`;

export interface InProcessServers {
  dir: string;
  daemon: RunningDaemon;
  /** The daemon's bearer token. */
  token: string;
  socketPath: string;
  controller: RunningController;
  apiKey: string;
  stop(): Promise<void>;
}

/** Logs go nowhere unless TEST_LOG names a level (then to stdout, as JSON lines). */
export async function startInProcess(options: { httpDeadlines?: Partial<RequestDeadlines> } = {}): Promise<InProcessServers> {
  const log = pino({ level: process.env.TEST_LOG ?? "silent" }) as unknown as Logger;
  const dir = await mkdtemp(join(tmpdir(), "corral-ip-"));
  const socketPath = join(dir, "api.sock");
  await writeFile(join(dir, "daemon.yaml"), DAEMON_CONFIG(socketPath));
  const daemon = await startDaemon({ configPath: join(dir, "daemon.yaml"), stateDir: join(dir, "d"), log, port: 0, httpDeadlines: options.httpDeadlines });
  const controller = await startController({ port: 0, apiKey: IN_PROCESS_API_KEY, stateDir: join(dir, "c"), log, heartbeatMs: 60_000, httpDeadlines: options.httpDeadlines });
  return {
    dir,
    daemon,
    token: readFileSync(join(dir, "d", "auth", "token"), "utf8").trim(),
    socketPath,
    controller,
    apiKey: IN_PROCESS_API_KEY,
    stop: async () => {
      await controller.stop();
      await daemon.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
