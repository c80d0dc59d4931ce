// A typed client for the fleet controller's API (TTstack's controller routes and Virtumancer's host routes).
// The CLI's `host`, `env` and `status` commands use it; it shares the daemon client's transport and errors.
import type { Static } from "@sinclair/typebox";
import type {
  CreateEnv,
  Env,
  FleetImage,
  FleetStatus,
  FleetVm,
  Host,
  HostInfoViewSchema,
  HostVm,
  RegisterHost,
  VmAction,
} from "../protocol/controller.ts";
import type { VmHardware } from "../protocol/ttstack-agent.ts";
import { Transport } from "./transport.ts";

export interface ControllerClientOptions {
  /** `http://host:port` of the controller (default port 9200). */
  url: string;
  /** The controller's `--api-key`, sent as `Authorization: Bearer KEY`. */
  apiKey?: string;
  /** Per-request deadline for quick reads (default 30 s); calls that wait on hosts allow more. */
  timeoutMs?: number;
}

/** GET /api/hosts/ID/info, Virtumancer's shape (memory in bytes). */
export type HostInfoView = Static<typeof HostInfoViewSchema>;

/**
 * What DELETE /api/envs/ID did: `deleted` when every host confirmed (204); `deleting` when some host has
 * not yet (202): the controller keeps retrying, and `env` is the environment as it stands.
 */
export type EnvRemoval = { status: "deleted" } | { status: "deleting"; env: Env };

// Creating, stopping or deleting an environment waits on its hosts, each VM booting under TCG at worst.
const HOST_WAIT_MS = 10 * 60_000;

const segment = encodeURIComponent;

/** `client.hosts`: the host registry (TTstack's `{addr}` and Virtumancer's `{id, uri}` bodies alike). */
export class HostsApi {
  constructor(private readonly transport: Transport) {}

  /** Registers a daemon by `{addr: "HOST:PORT"}` or `{id, uri: "http://HOST:PORT"}`, with its API `token` if it has one. */
  add(body: RegisterHost): Promise<Host> {
    return this.transport.json("POST", "/api/hosts", body, HOST_WAIT_MS);
  }

  list(): Promise<Host[]> {
    return this.transport.json("GET", "/api/hosts");
  }

  get(id: string): Promise<Host> {
    return this.transport.json("GET", `/api/hosts/${segment(id)}`);
  }

  /** Fails with 409 while the host holds environments' VMs. */
  async remove(id: string): Promise<void> {
    await this.transport.json("DELETE", `/api/hosts/${segment(id)}`);
  }

  info(id: string): Promise<HostInfoView> {
    return this.transport.json("GET", `/api/hosts/${segment(id)}/info`);
  }

  /** Every VM the host's daemon reports, the controller's and others. */
  vms(id: string): Promise<HostVm[]> {
    return this.transport.json("GET", `/api/hosts/${segment(id)}/vms`);
  }

  hardware(hostId: string, vmName: string): Promise<VmHardware> {
    return this.transport.json("GET", `/api/hosts/${segment(hostId)}/vms/${segment(vmName)}/hardware`);
  }

  async action(hostId: string, vmName: string, action: VmAction): Promise<void> {
    await this.transport.json("POST", `/api/hosts/${segment(hostId)}/vms/${segment(vmName)}/action`, { action }, HOST_WAIT_MS);
  }
}

/** `client.envs`: environments, each a set of VMs the controller placed on its hosts. */
export class EnvsApi {
  constructor(private readonly transport: Transport) {}

  /** Answers once the VMs are made; `state` is `partial` when some failed (see each VM's `error`). 422 `no_capacity` when nothing fits. */
  create(body: CreateEnv): Promise<Env> {
    return this.transport.json("POST", "/api/envs", body, HOST_WAIT_MS);
  }

  list(): Promise<Env[]> {
    return this.transport.json("GET", "/api/envs");
  }

  get(id: string): Promise<Env> {
    return this.transport.json("GET", `/api/envs/${segment(id)}`);
  }

  async remove(id: string): Promise<EnvRemoval> {
    const response = await this.transport.send("DELETE", `/api/envs/${segment(id)}`, { timeoutMs: HOST_WAIT_MS });
    const text = await response.body.text();
    if (response.statusCode === 202) return { status: "deleting", env: JSON.parse(text) as Env };
    return { status: "deleted" };
  }

  stop(id: string): Promise<Env> {
    return this.transport.json("POST", `/api/envs/${segment(id)}/stop`, undefined, HOST_WAIT_MS);
  }

  start(id: string): Promise<Env> {
    return this.transport.json("POST", `/api/envs/${segment(id)}/start`, undefined, HOST_WAIT_MS);
  }
}

export class ControllerClient {
  readonly transport: Transport;
  readonly hosts: HostsApi;
  readonly envs: EnvsApi;

  constructor(readonly options: ControllerClientOptions) {
    this.transport = new Transport({ url: options.url, token: options.apiKey, timeoutMs: options.timeoutMs });
    this.hosts = new HostsApi(this.transport);
    this.envs = new EnvsApi(this.transport);
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  /** One VM of an environment, by its id (`ENV-N`). */
  vm(id: string): Promise<FleetVm> {
    return this.transport.json("GET", `/api/vms/${segment(id)}`);
  }

  /** Every image of the fleet, with the hosts that have it. */
  images(): Promise<FleetImage[]> {
    return this.transport.json("GET", "/api/images");
  }

  /** Fleet totals: hosts, environments, VMs, and CPU, memory and disk (total, reserved, used). */
  status(): Promise<FleetStatus> {
    return this.transport.json("GET", "/api/status");
  }
}
