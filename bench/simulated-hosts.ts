// Simulated hosts: a light in-process simulation of the daemon's TTstack agent API, used only by the
// controller scale benchmark (bench/controller-scale.ts). They are not daemons: nothing boots, a VM is a
// record made at once (state "running", its ports mapped from a counter), and bodies are checked only as far
// as the controller could get them wrong. Each simulated host has its own port on 127.0.0.1, since the
// controller calls fixed paths on a host's origin; one HTTP parser serves every port and tells the hosts
// apart by the port a connection came in on. Answers use the wire shapes of src/protocol/ttstack-agent.ts,
// in TTstack's envelope as the daemon sends them.
// `startSimulatedHostsThread` runs them on a worker thread, so that serving a thousand hosts does not count
// against the event loop of the controller being measured.
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createNetServer, type Server as NetServer } from "node:net";
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { libvirtState } from "../src/protocol/controller.ts";
import { tsxWorker } from "./tsx-worker.ts";
import { TT_DONE, ttOk, ttVmState, type TtEngine } from "../src/protocol/ttstack.ts";
import { TTSTACK_DEFAULTS, type AgentInfo, type AgentVm, type AgentVmDetail, type CreateAgentVm, type VmStats } from "../src/protocol/ttstack-agent.ts";

/** What every simulated host reports: a large machine (sizes in MiB, as TTstack counts them). */
export const SIMULATED_HOST = { cpu: 64, threadsPerCore: 2, memMiB: 256 * 1024, diskMiB: 4 * 1024 * 1024, image: "base" } as const;

/** Requests served, by route ("GET /api/info", "POST /api/vms", …), over every simulated host. */
export type SimulatedCounts = Record<string, number>;

interface Answer {
  status: number;
  body?: unknown;
}

const notFound = (what: string, code = "not_found"): Answer => ({ status: 404, body: { ok: false, error: what, code } });

/** One simulated host: its VMs in memory. */
class SimulatedHost {
  readonly id: string;
  private readonly vms = new Map<string, AgentVm>();
  private nextPort = 20_000;
  private nextVm = 0;

  constructor(readonly index: number) {
    this.id = `sim-${index}`;
  }

  info(): AgentInfo {
    const running = [...this.vms.values()].filter((vm) => vm.status === "running");
    return {
      host_id: this.id,
      resource: {
        cpu_total: SIMULATED_HOST.cpu,
        cpu_used: running.reduce((sum, vm) => sum + vm.cpu, 0),
        mem_total: SIMULATED_HOST.memMiB,
        mem_used: running.reduce((sum, vm) => sum + vm.mem, 0),
        disk_total: SIMULATED_HOST.diskMiB,
        disk_used: [...this.vms.values()].reduce((sum, vm) => sum + vm.disk, 0),
        vm_count: running.length,
      },
      engines: ["qemu"],
      storage: "file",
      images: [SIMULATED_HOST.image],
      corral_version: "simulated",
      hostname: this.id,
      threads_per_core: SIMULATED_HOST.threadsPerCore,
    };
  }

  route(method: string, path: string, query: URLSearchParams, body: unknown): Answer {
    if (path === "/api/info" && method === "GET") return { status: 200, body: ttOk(this.info()) };
    if (path === "/api/images" && method === "GET") return { status: 200, body: ttOk([SIMULATED_HOST.image]) };
    if (path === "/api/vms") {
      if (method === "GET") {
        const envId = query.get("env_id");
        return { status: 200, body: ttOk([...this.vms.values()].filter((vm) => envId === null || vm.env_id === envId)) };
      }
      if (method === "POST") return this.create(body);
    }
    const match = /^\/api\/vms\/([^/]+)(?:\/(stop|start|reboot|stats))?$/.exec(path);
    if (!match) return notFound(`Route ${method}:${path} not found`);
    const id = decodeURIComponent(match[1] as string);
    const vm = this.vms.get(id);
    const action = match[2];
    // As the daemon (and TTstack's agent): deleting a VM the host does not have succeeds.
    if (action === undefined && method === "DELETE") {
      this.vms.delete(id);
      return { status: 200, body: TT_DONE };
    }
    if (!vm) return notFound(`VM ${JSON.stringify(id)} does not exist on simulated host ${this.id}`, "vm_not_found");
    if (action === undefined && method === "GET") return { status: 200, body: ttOk(this.detail(vm)) };
    if (action === "stats" && method === "GET") return { status: 200, body: ttOk(this.stats(vm)) };
    if (action !== undefined && action !== "stats" && method === "POST") {
      vm.status = action === "stop" ? "stopped" : "running";
      vm.state = ttVmState(vm.status);
      return { status: 200, body: TT_DONE };
    }
    return notFound(`Route ${method}:${path} not found`);
  }

  private create(body: unknown): Answer {
    const spec = body as Partial<CreateAgentVm> | null;
    if (typeof spec?.vm_id !== "string" || typeof spec.image !== "string") {
      return { status: 400, body: { ok: false, error: 'Missing body field "vm_id" or "image"', code: "invalid_request" } };
    }
    if (spec.image !== SIMULATED_HOST.image) return notFound(`Image ${JSON.stringify(spec.image)} is not on simulated host ${this.id}`, "image_not_found");
    if (this.vms.has(spec.vm_id)) return { status: 409, body: { ok: false, error: `VM ${JSON.stringify(spec.vm_id)} already exists`, code: "conflict" } };
    // As the daemon does: port 22 is always forwarded, then the ports asked for.
    const ports = [22, ...(spec.ports ?? []).filter((p) => p !== 22)];
    const n = ++this.nextVm;
    const vm: AgentVm = {
      id: spec.vm_id,
      env_id: spec.env_id ?? "",
      host_id: this.id,
      image: spec.image,
      engine: (spec.engine ?? TTSTACK_DEFAULTS.engine) as TtEngine,
      cpu: spec.cpu ?? TTSTACK_DEFAULTS.cpu,
      mem: spec.mem ?? TTSTACK_DEFAULTS.mem,
      disk: spec.disk ?? TTSTACK_DEFAULTS.disk,
      ip: `10.${(n >> 8) & 255}.${n & 255}.2`,
      port_map: Object.fromEntries(ports.map((p) => [String(p), this.nextPort++])),
      state: "running",
      created_at: Math.floor(Date.now() / 1000),
      status: "running",
      hostgroup: "ttstack",
      ports,
      deny_outgoing: spec.deny_outgoing ?? false,
      mac: `52:54:00:${hex(this.index >> 8)}:${hex(this.index)}:${hex(n)}`,
      last_error: null,
      fleet_id: spec.fleet_id ?? null,
    };
    this.vms.set(vm.id, vm);
    return { status: 201, body: ttOk({ vm }) };
  }

  private detail(vm: AgentVm): AgentVmDetail {
    return {
      ...vm,
      hardware: {
        disks: [
          {
            type: "file",
            device: "disk",
            driver: { driver_name: "qemu", type: "qcow2" },
            path: `/simulated/${vm.id}/disk.qcow2`,
            target: { dev: "vda", bus: "virtio" },
            size_mib: vm.disk,
          },
        ],
        networks: [{ type: "user", mac: { address: vm.mac }, source: { mode: "user" }, model: { model_type: "virtio" } }],
      },
    };
  }

  private stats(vm: AgentVm): VmStats {
    const maxKiB = vm.mem * 1024;
    return { state: libvirtState(vm.status), memory: vm.status === "running" ? maxKiB : 0, max_mem: maxKiB, vcpu: vm.cpu, cpu_time: 0, disk_stats: [], net_stats: [] };
  }
}

function hex(n: number): string {
  return (n & 255).toString(16).padStart(2, "0");
}

/** The simulated hosts of one run, served on this thread. */
export class SimulatedHosts {
  private readonly counts: SimulatedCounts = {};

  private constructor(
    private readonly byPort: Map<number, SimulatedHost>,
    private readonly listeners: NetServer[],
    private readonly http: ReturnType<typeof createHttpServer>,
  ) {}

  /** Starts `count` simulated hosts, each listening on a free port of 127.0.0.1. */
  static async start(count: number): Promise<SimulatedHosts> {
    const byPort = new Map<number, SimulatedHost>();
    // The daemon is a fastify server: keep idle connections as long as it does (72 s).
    const http = createHttpServer({ keepAliveTimeout: 72_000 });
    const hosts = new SimulatedHosts(byPort, [], http);
    http.on("request", (request, response) => hosts.serve(request, response));
    for (let index = 1; index <= count; index++) {
      const listener = createNetServer((socket) => http.emit("connection", socket));
      hosts.listeners.push(listener);
      await new Promise<void>((resolve, reject) => {
        listener.once("error", reject);
        listener.listen(0, "127.0.0.1", () => resolve());
      });
      const address = listener.address();
      if (typeof address !== "object" || address === null) throw new Error(`Simulated host ${index} got no port`);
      byPort.set(address.port, new SimulatedHost(index));
    }
    return hosts;
  }

  /** `http://127.0.0.1:PORT` of each simulated host, in order (`sim-1` first). */
  get uris(): string[] {
    return [...this.byPort.keys()].map((port) => `http://127.0.0.1:${port}`);
  }

  countsSoFar(): SimulatedCounts {
    return { ...this.counts };
  }

  async close(): Promise<void> {
    await Promise.all(this.listeners.map((l) => new Promise<void>((resolve) => l.close(() => resolve()))));
    this.http.closeAllConnections();
  }

  private serve(request: IncomingMessage, response: ServerResponse): void {
    const host = this.byPort.get(request.socket.localPort ?? 0);
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const url = new URL(request.url ?? "/", "http://simulated");
      const method = request.method ?? "GET";
      const route = `${method} ${url.pathname.replace(/^\/api\/vms\/[^/]+/, "/api/vms/ID")}`;
      this.counts[route] = (this.counts[route] ?? 0) + 1;
      let answer: Answer;
      try {
        const body = chunks.length > 0 ? (JSON.parse(Buffer.concat(chunks).toString("utf8")) as unknown) : undefined;
        answer = host ? host.route(method, url.pathname, url.searchParams, body) : notFound(`No simulated host on port ${request.socket.localPort}`);
      } catch {
        answer = { status: 400, body: { ok: false, error: "The body is not JSON", code: "invalid_json" } };
      }
      if (answer.body === undefined) {
        response.writeHead(answer.status).end();
        return;
      }
      const text = JSON.stringify(answer.body);
      response.writeHead(answer.status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(text) }).end(text);
    });
  }
}

// ---- on a worker thread ----

const WORKER_KEY = "corralSimulatedHosts";

type ToWorker = { type: "counts" } | { type: "close" };
type FromWorker = { type: "ready"; uris: string[] } | { type: "counts"; counts: SimulatedCounts } | { type: "closed" };

export interface SimulatedHostsThread {
  uris: string[];
  counts(): Promise<SimulatedCounts>;
  close(): Promise<void>;
}

/** Starts `count` simulated hosts on a worker thread of this process. */
export async function startSimulatedHostsThread(count: number): Promise<SimulatedHostsThread> {
  const worker = tsxWorker(import.meta.url, { [WORKER_KEY]: count });
  const next = (type: FromWorker["type"]): Promise<FromWorker> =>
    new Promise((resolve, reject) => {
      const onMessage = (message: FromWorker): void => {
        if (message.type !== type) return;
        worker.off("message", onMessage).off("error", reject);
        resolve(message);
      };
      worker.on("message", onMessage).once("error", reject);
    });
  const ready = await next("ready").catch(async (err: unknown) => {
    await worker.terminate();
    throw new Error(`Cannot start ${count} simulated hosts on a worker thread`, { cause: err });
  });
  const send = (message: ToWorker): void => worker.postMessage(message);
  return {
    uris: ready.type === "ready" ? ready.uris : [],
    async counts() {
      const answer = next("counts");
      send({ type: "counts" });
      const message = await answer;
      return message.type === "counts" ? message.counts : {};
    },
    async close() {
      const closed = next("closed");
      send({ type: "close" });
      await closed.catch(() => undefined);
      await worker.terminate();
    },
  };
}

const asWorker = isMainThread ? undefined : (workerData as Record<string, unknown> | null)?.[WORKER_KEY];
if (typeof asWorker === "number" && parentPort) {
  const port = parentPort;
  const hosts = await SimulatedHosts.start(asWorker);
  const reply = (message: FromWorker): void => port.postMessage(message);
  port.on("message", (message: ToWorker) => {
    if (message.type === "counts") reply({ type: "counts", counts: hosts.countsSoFar() });
    else void hosts.close().then(() => reply({ type: "closed" }));
  });
  reply({ type: "ready", uris: hosts.uris });
}
