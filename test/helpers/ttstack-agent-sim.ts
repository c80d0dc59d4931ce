// A SIMULATION of TTstack's host agent (`tt-agent`), for tests of Corral's controller driving a TTstack host:
// TTstack is Rust and crates.io is out of reach here, so the real agent cannot be built. It answers exactly as
// TTstack's agent code does (docs/ttstack-wire-notes.md §5; rust-util-collections/TTstack at 22e90981):
// its routes (crates/agent/src/main.rs:62-72), its envelope and status codes (crates/agent/src/handler.rs),
// its auth (crates/agent/src/auth.rs: `Authorization: Bearer KEY`, else 401 with its message), its runtime's
// rules (crates/agent/src/runtime.rs: names checked by validate_name, port 22 first and host ports from
// 20000 + 100 per VM, a qemu VM stopped is `paused`, a delete of an unknown VM succeeds, a stop or start of
// one fails with 500), and axum's own answers where no handler runs (a body serde cannot read: 422 with
// text; an unknown path: 404 with no body). Nothing boots: a VM is a record. Bodies are serialized as serde
// would (the fixtures' texts where there is one: test/fixtures/ttstack/examples.ts).
//
// `misbehave` makes it answer like a broken host instead (HTML, garbage, a bare list, a wrong shape, 500s),
// for the controller's `host_bad_answer` tests.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { serdeReadError } from "../fixtures/ttstack/contract.ts";
import { agentVmJson, AGENT, EMPTY_OK, failure, success } from "../fixtures/ttstack/examples.ts";

export type Misbehaviour = "html" | "garbage" | "bare-json" | "wrong-shape" | "server-error" | "empty";

interface SimVm {
  id: string;
  env_id: string;
  image: string;
  cpu: number;
  mem: number;
  disk: number;
  ip: string;
  ports: Record<string, number>;
  state: "running" | "paused" | "stopped";
  created_at: number;
}

export interface TTstackAgentOptions {
  /** The agent's `--api-key`: with TTstack's shared key model, the controller's own key. */
  apiKey?: string;
  hostId?: string;
  images?: string[];
  /** Serve TTstack's example answers (test/fixtures/ttstack/examples.ts) verbatim for /api/info and /api/images. */
  exampleAnswers?: boolean;
}

/** crates/core/src/model.rs:236-257. */
function validName(name: string): boolean {
  return name.length > 0 && name.length <= 128 && /^[A-Za-z0-9._-]+$/.test(name) && !name.startsWith(".") && !name.includes("..");
}

const CPU_TOTAL = 16;
const MEM_TOTAL = 31_785;
const DISK_TOTAL = 409_600;

export class TTstackAgentSim {
  readonly vms = new Map<string, SimVm>();
  /** Every request body received, as text, by "METHOD /path". */
  readonly received: { route: string; auth: string | undefined; body: string }[] = [];
  misbehave: Misbehaviour | undefined;
  private nextIndex = 0;
  private server: Server | undefined;
  addr = "";

  constructor(private readonly options: TTstackAgentOptions = {}) {}

  get hostId(): string {
    return this.options.exampleAnswers ? AGENT.hostId : (this.options.hostId ?? "7d3e91aa");
  }

  async start(): Promise<this> {
    const server = createServer((request, response) => void this.serve(request, response));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    this.server = server;
    this.addr = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private images(): string[] {
    return this.options.images ?? ["base", "alpine-cloud"];
  }

  /** AgentInfo (crates/core/src/api.rs:32-39; runtime.rs:390-398): running and paused VMs use resources. */
  private infoJson(): string {
    if (this.options.exampleAnswers) return AGENT.info;
    const using = [...this.vms.values()].filter((vm) => vm.state !== "stopped");
    const sum = (f: (vm: SimVm) => number) => using.reduce((total, vm) => total + f(vm), 0);
    const disk = [...this.vms.values()].reduce((total, vm) => total + vm.disk, 0);
    return success(
      `{"host_id":${JSON.stringify(this.hostId)},"resource":{"cpu_total":${CPU_TOTAL},"cpu_used":${sum((vm) => vm.cpu)},"mem_total":${MEM_TOTAL},"mem_used":${sum((vm) => vm.mem)},` +
        `"disk_total":${DISK_TOTAL},"disk_used":${disk},"vm_count":${using.length}},"engines":["qemu","docker"],"storage":"file","images":${JSON.stringify(this.images())}}`,
    );
  }

  private vmJson(vm: SimVm): string {
    return agentVmJson({ ...vm, host_id: this.hostId });
  }

  private async serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    let body = "";
    for await (const chunk of request) body += String(chunk);
    const url = new URL(request.url ?? "/", "http://agent");
    const method = request.method ?? "GET";
    this.received.push({ route: `${method} ${url.pathname}`, auth: request.headers.authorization, body });
    const send = (status: number, text: string | undefined, type = "application/json"): void => {
      response.writeHead(status, text === undefined ? {} : { "content-type": type, "content-length": Buffer.byteLength(text) }).end(text);
    };
    if (this.misbehave) return this.misbehaveOn(send);
    // crates/agent/src/auth.rs:29-43
    if (this.options.apiKey !== undefined && request.headers.authorization !== `Bearer ${this.options.apiKey}`) return send(401, AGENT.unauthorized);
    const path = url.pathname;
    if (path === "/api/info" && method === "GET") return send(200, this.infoJson());
    if (path === "/api/images" && method === "GET") return send(200, this.options.exampleAnswers ? AGENT.images : success(JSON.stringify(this.images())));
    if (path === "/api/vms" && method === "GET") return send(200, success(`[${[...this.vms.values()].map((vm) => this.vmJson(vm)).join(",")}]`));
    if (path === "/api/vms" && method === "POST") return this.create(body, send);
    const match = /^\/api\/vms\/([^/]+)(?:\/(stop|start))?$/.exec(path);
    if (!match) return send(404, undefined);
    const id = decodeURIComponent(match[1] as string);
    const action = match[2];
    const vm = this.vms.get(id);
    if (action === undefined && method === "GET") return vm ? send(200, success(this.vmJson(vm))) : send(404, AGENT.vmNotFound(id));
    if (action === undefined && method === "DELETE") {
      // runtime.rs:340-344: an unknown VM is already gone.
      this.vms.delete(id);
      return send(200, EMPTY_OK);
    }
    if (method !== "POST" || action === undefined) return send(405, undefined);
    // runtime.rs:285-338: stop and start of an unknown VM fail (500); qemu pauses on stop.
    if (!vm) return send(500, failure(`VM not found: ${id}`));
    if (action === "stop" && vm.state === "running") vm.state = "paused";
    if (action === "start" && vm.state !== "running") vm.state = "running";
    return send(200, EMPTY_OK);
  }

  /** POST /api/vms (handler.rs:37-52, runtime.rs:139-283). */
  private create(body: string, send: (status: number, text: string | undefined, type?: string) => void): void {
    let req: { vm_id: string; env_id: string; image: string; engine: string; cpu: number; mem: number; disk: number; ports: number[]; deny_outgoing: boolean };
    try {
      req = JSON.parse(body) as typeof req;
    } catch {
      return send(400, "Failed to parse the request body as JSON", "text/plain; charset=utf-8");
    }
    // axum's Json extractor: what serde cannot read as CreateVmReq is a 422 with text, before any handler.
    const unreadable = serdeReadError("CreateVmReq", req);
    if (unreadable !== undefined) return send(422, `Failed to deserialize the JSON body into the target type: ${unreadable}`, "text/plain; charset=utf-8");
    if (!validName(req.vm_id)) return send(500, failure("vm_id contains invalid characters (only a-z, A-Z, 0-9, '-', '_', '.' allowed)"));
    if (!validName(req.image)) return send(500, failure("image contains invalid characters (only a-z, A-Z, 0-9, '-', '_', '.' allowed)"));
    if (req.cpu === 0 || req.mem === 0 || req.disk === 0) return send(500, failure("cpu, mem and disk must be > 0"));
    if (!this.images().includes(req.image)) return send(500, failure(`image clone: no such image ${req.image}`));
    // A second VM of the same id finds its TAP device taken (runtime.rs:195-198).
    if (this.vms.has(req.vm_id)) return send(500, failure(`TAP setup: device for ${req.vm_id} exists`));
    const index = this.nextIndex++;
    const ports = [22, ...req.ports.filter((p) => p !== 22)];
    const vm: SimVm = {
      id: req.vm_id,
      env_id: req.env_id,
      image: req.image,
      cpu: req.cpu,
      mem: req.mem,
      disk: req.disk,
      ip: `10.10.0.${index + 2}`,
      ports: Object.fromEntries(ports.map((guest, i) => [String(guest), 20_000 + index * 100 + i])),
      state: "running",
      created_at: Math.floor(Date.now() / 1000),
    };
    this.vms.set(vm.id, vm);
    send(201, success(`{"vm":${this.vmJson(vm)}}`));
  }

  private misbehaveOn(send: (status: number, text: string | undefined, type?: string) => void): void {
    switch (this.misbehave) {
      case "html":
        return send(200, "<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>", "text/html");
      case "garbage":
        return send(200, "\u0000\u0001 not json at all", "application/octet-stream");
      case "bare-json":
        return send(200, JSON.stringify({ host_id: this.hostId, resource: {} }));
      case "wrong-shape":
        return send(200, success(`{"host_id":${JSON.stringify(this.hostId)},"resource":{"cpu_total":"sixteen"},"engines":["qemu"],"storage":"file","images":[]}`));
      case "server-error":
        return send(500, failure("database is locked"));
      case "empty":
        return send(200, "");
      default:
        return send(500, undefined);
    }
  }
}
