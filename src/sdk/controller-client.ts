// A typed client for the fleet controller's API: TTstack's controller routes (hosts, environments, VMs,
// images, status), each answer in TTstack's envelope {ok, data} and unwrapped here, and Virtumancer's host
// routes (plain JSON). The CLI's `host`, `env` and `status` commands use it; it shares the daemon client's
// transport and errors (an envelope's error carries Corral's {error, code} too).
import type { Static } from "@sinclair/typebox";
import type { CreateEnv, Env, EnvDetail, FleetImage, FleetStatus, FleetVm, Host, HostInfoViewSchema, HostVm, RegisterHost, VmAction } from "../protocol/controller.ts";
import type { VmHardware } from "../protocol/ttstack-agent.ts";
import { CorralApiError, type HttpMethod, Transport } from "./transport.ts";

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
 * What DELETE /api/envs/ID did: `deleted` when every host confirmed (200); `deleting` when some host has
 * not yet (202): the controller keeps retrying, and `env` is the environment as it stands.
 */
export type EnvRemoval = { status: "deleted" } | { status: "deleting"; env: EnvDetail };

// Creating, stopping or deleting an environment waits on its hosts, each VM booting under TCG at worst.
const HOST_WAIT_MS = 10 * 60_000;

const segment = encodeURIComponent;

/**
 * A TTstack route's whole success envelope (`{"ok": true, "data": …}` and anything beside, such as a page's
 * `next`). A body that is not the envelope is an error that says so (a controller of another version, a
 * proxy's page).
 */
async function ttEnvelope<T>(transport: Transport, method: HttpMethod, path: string, body?: unknown, timeoutMs?: number): Promise<{ ok: true; data: T; next?: unknown }> {
  const answer = await transport.json<{ ok?: unknown; data?: T; error?: unknown } | undefined>(method, path, body, timeoutMs);
  if (typeof answer !== "object" || answer === null || typeof answer.ok !== "boolean") {
    throw new CorralApiError(502, "host_bad_answer", `The controller answered ${method} ${path} with something that is not TTstack's envelope {"ok", "data"}`, method, path);
  }
  if (!answer.ok) throw new CorralApiError(502, "unknown", typeof answer.error === "string" ? answer.error : `${method} ${path} failed`, method, path);
  return answer as { ok: true; data: T; next?: unknown };
}

/** A TTstack route's answer: its `data` (undefined for a `{"ok":true}`). */
export async function ttData<T>(transport: Transport, method: HttpMethod, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
  return (await ttEnvelope<T>(transport, method, path, body, timeoutMs)).data;
}

/** `client.hosts`: the host registry (TTstack's `{addr}` and Virtumancer's `{id, uri}` bodies alike). */
export class HostsApi {
  constructor(private readonly transport: Transport) {}

  /** Registers a daemon by `{addr: "HOST:PORT"}` or `{id, uri: "http://HOST:PORT"}`, with its API `token` if it has one. */
  add(body: RegisterHost): Promise<Host> {
    return ttData(this.transport, "POST", "/api/hosts", body, HOST_WAIT_MS);
  }

  list(): Promise<Host[]> {
    return ttData(this.transport, "GET", "/api/hosts");
  }

  get(id: string): Promise<Host> {
    return ttData(this.transport, "GET", `/api/hosts/${segment(id)}`);
  }

  /** Fails with 409 while the host holds environments' VMs. */
  async remove(id: string): Promise<void> {
    await ttData(this.transport, "DELETE", `/api/hosts/${segment(id)}`);
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

/** A page of environments, and where the next one starts (null: this was the last). */
export interface EnvPage {
  envs: Env[];
  next: string | null;
}

/** `client.envs`: environments, each a set of VMs the controller placed on its hosts. */
export class EnvsApi {
  constructor(private readonly transport: Transport) {}

  /**
   * Answers once the VMs are made: the environment and its VMs; its `status` is `partial` when some failed
   * (each has its `error`, and `warnings` says which). 422 `no_capacity` when nothing fits.
   */
  create(body: CreateEnv): Promise<EnvDetail> {
    return ttData(this.transport, "POST", "/api/envs", body, HOST_WAIT_MS);
  }

  /** Every environment, its VMs by id (`vm_ids`): `get` has them whole. One answer: `pages` for a big fleet. */
  list(): Promise<Env[]> {
    return ttData(this.transport, "GET", "/api/envs");
  }

  /** One page of `list`: at most `limit` (1-1000) environments after `after` (the `next` of the page before; null after the last). */
  async page(limit: number, after?: string): Promise<EnvPage> {
    const query = new URLSearchParams({ limit: String(limit), ...(after === undefined ? {} : { after }) });
    const answer = await ttEnvelope<Env[]>(this.transport, "GET", `/api/envs?${query}`);
    if (!Array.isArray(answer.data))
      throw new CorralApiError(502, "host_bad_answer", "The controller answered GET /api/envs?limit with something that is not a page", "GET", "/api/envs");
    return { envs: answer.data, next: typeof answer.next === "string" ? answer.next : null };
  }

  /** Every environment, a page at a time (`pageSize` each): a fleet's whole list never held at once. */
  async *pages(pageSize = 500): AsyncGenerator<Env[]> {
    let after: string | undefined;
    do {
      const page = await this.page(pageSize, after);
      if (page.envs.length > 0) yield page.envs;
      after = page.next ?? undefined;
    } while (after !== undefined);
  }

  get(id: string): Promise<EnvDetail> {
    return ttData(this.transport, "GET", `/api/envs/${segment(id)}`);
  }

  async remove(id: string): Promise<EnvRemoval> {
    const response = await this.transport.send("DELETE", `/api/envs/${segment(id)}`, { timeoutMs: HOST_WAIT_MS });
    await response.body.text();
    if (response.statusCode === 202) return { status: "deleting", env: await this.get(id) };
    return { status: "deleted" };
  }

  /** Stops every VM; fails with the first VM's error when some could not (the environment is then `partial`). */
  async stop(id: string): Promise<EnvDetail> {
    await ttData(this.transport, "POST", `/api/envs/${segment(id)}/stop`, undefined, HOST_WAIT_MS);
    return this.get(id);
  }

  async start(id: string): Promise<EnvDetail> {
    await ttData(this.transport, "POST", `/api/envs/${segment(id)}/start`, undefined, HOST_WAIT_MS);
    return this.get(id);
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
    return ttData(this.transport, "GET", `/api/vms/${segment(id)}`);
  }

  /** Every image of the fleet's online hosts: one entry per image and host. */
  images(): Promise<FleetImage[]> {
    return ttData(this.transport, "GET", "/api/images");
  }

  /** Fleet totals: hosts, environments, VMs, and CPU, memory and disk (total, used; reserved beside). */
  status(): Promise<FleetStatus> {
    return ttData(this.transport, "GET", "/api/status");
  }
}
