// The host registry: hosts registered by TTstack's `{addr}` or Virtumancer's `{id, uri}`, checked by
// asking the host for its /api/info before they are stored (which also tells a Corral daemon from a TTstack
// agent: host-driver.ts), removed only when they hold no VMs of the controller. Heartbeats (heartbeat.ts) keep
// their state and reports fresh. A host that does not answer, or answers something the controller cannot
// read, is refused with 502 and nothing is stored.
import { CorralError } from "../protocol/errors.ts";
import type { Host, RegisterHost } from "../protocol/controller.ts";
import { HOST_ID_PATTERN } from "../protocol/controller.ts";
import type { FleetStore, HostRecord } from "./db/index.ts";
import type { FleetEvents } from "./events.ts";
import { unixSeconds } from "../protocol/ttstack.ts";
import { CorralApiError } from "../sdk/transport.ts";
import { describeHostFailure, type HostDrivers } from "./host-driver.ts";

const hostIdRe = new RegExp(HOST_ID_PATTERN);

/** `addr` (HOST:PORT) and `uri` (http://HOST:PORT) of a registration, each derived from the other. */
export function hostAddress(body: Pick<RegisterHost, "addr" | "uri">): { addr: string; uri: string } {
  if (body.addr === undefined && body.uri === undefined) {
    throw new CorralError("invalid_request", 'Missing body field "addr" (HOST:PORT) or "uri" (http://HOST:PORT): give one');
  }
  if (body.addr !== undefined && body.uri !== undefined) {
    const fromAddr = parseUri(`http://${body.addr}`, "addr");
    const fromUri = parseUri(body.uri, "uri");
    if (fromAddr.host !== fromUri.host) throw new CorralError("invalid_request", `The "addr" ${JSON.stringify(body.addr)} and the "uri" ${JSON.stringify(body.uri)} name different hosts: give one`);
    return { addr: fromUri.host, uri: fromUri.origin };
  }
  const url = body.uri !== undefined ? parseUri(body.uri, "uri") : parseUri(`http://${body.addr}`, "addr");
  return { addr: url.host, uri: url.origin };
}

function parseUri(text: string, field: "addr" | "uri"): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CorralError("invalid_request", field === "addr" ? `Invalid "addr" ${JSON.stringify(text.slice(7))}: it must be HOST:PORT` : `Invalid "uri" ${JSON.stringify(text)}: it must be http://HOST:PORT`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new CorralError("invalid_request", `Cannot reach a host by ${JSON.stringify(text)}: Corral hosts are Corral daemons, reached by http://HOST:PORT or https://HOST:PORT (libvirt URIs such as qemu+ssh:// are not supported)`);
  }
  if (url.pathname !== "/" || url.search || url.hash || url.username || url.password) {
    throw new CorralError("invalid_request", `Invalid ${JSON.stringify(field)} ${JSON.stringify(text)}: give only the scheme, host and port`);
  }
  if (field === "addr" && url.port === "") throw new CorralError("invalid_request", `Invalid "addr" ${JSON.stringify(text.slice(7))}: it must be HOST:PORT`);
  return url;
}

type Engines = Host["engines"];
type Storage = Host["storage"];
const STORAGES: readonly string[] = ["file", "zvol"];

/** A host as the TTstack routes show it: TTstack's Host, Corral's fields beside. */
export function hostView(host: HostRecord): Host {
  const info = host.info;
  return {
    id: host.id,
    addr: host.addr,
    resource: {
      cpu_total: info?.cpu_total ?? 0,
      cpu_used: info?.cpu_used ?? 0,
      mem_total: info?.mem_total ?? 0,
      mem_used: info?.mem_used ?? 0,
      disk_total: info?.disk_total ?? 0,
      disk_used: info?.disk_used ?? 0,
      vm_count: info?.vm_count ?? 0,
    },
    state: host.state,
    // As the host reported them (a TTstack agent and a Corral daemon name TTstack's engines and storages).
    engines: (info?.engines ?? []) as Engines,
    storage: (STORAGES.includes(info?.storage ?? "") ? info?.storage : "file") as Storage,
    registered_at: unixSeconds(host.registeredAt),
    uri: host.uri,
    kind: host.kind,
    hostname: host.hostname,
    reserved: host.reserved,
    images: info?.images ?? [],
    vm_count: host.vms.length,
    last_seen_at: host.lastSeenAt === null ? null : unixSeconds(host.lastSeenAt),
    last_error: host.lastError,
  };
}

/**
 * Why a host could not be registered, as a 502: an answer the controller cannot use (not JSON, not TTstack's
 * envelope, another shape, a 5xx) is `host_bad_answer`; a refusal (a 401: the key or token is wrong) or no
 * answer at all is `host_unreachable`. Never the host's own 4xx status: it is not the client's request that
 * was wrong.
 */
function registrationFailure(name: string, uri: string, err: unknown): CorralError {
  const prefix = `Cannot register host ${JSON.stringify(name)}`;
  if (err instanceof CorralError && err.code === "host_bad_answer") return new CorralError("host_bad_answer", `${prefix}: ${err.message}`, { cause: err });
  if (err instanceof CorralApiError && err.status >= 500) {
    return new CorralError("host_bad_answer", `${prefix}: ${uri} answered ${err.method} ${err.path} with ${err.status}: ${err.message}`, { cause: err });
  }
  if (err instanceof CorralApiError) return new CorralError("host_unreachable", `${prefix}: ${uri} refused ${err.method} ${err.path}: ${describeHostFailure(err)}`, { cause: err });
  return new CorralError("host_unreachable", `${prefix}: ${uri} did not answer GET /api/info: ${describeHostFailure(err)}`, { cause: err });
}

export class HostRegistry {
  constructor(
    private readonly store: FleetStore,
    private readonly drivers: HostDrivers,
    private readonly events: FleetEvents,
  ) {}

  /** Registers a host after it answered /api/info and /api/vms; its id is the one given, else the host's own. */
  async register(body: RegisterHost): Promise<HostRecord> {
    const { addr, uri } = hostAddress(body);
    const token = body.token ?? null;
    const name = body.id ?? addr;
    const pending = `pending:${uri}`;
    let kind;
    let info;
    let vms;
    try {
      kind = await this.drivers.probe(name, { uri, token });
      const driver = this.drivers.for(pending, { uri, token, kind });
      [info, vms] = await Promise.all([driver.info(), driver.vms()]);
    } catch (err) {
      throw registrationFailure(name, uri, err);
    } finally {
      this.drivers.drop(pending);
    }
    const id = body.id ?? info.id;
    if (!hostIdRe.test(id)) throw new CorralError("invalid_request", `The host reports the id ${JSON.stringify(id)}, which cannot be used: give an "id"`);
    const now = new Date().toISOString();
    const host = await this.store.insertHost({ id, addr, uri, token, kind, state: "online", hostname: info.hostname, info, vms, lastSeenAt: now });
    await this.events.hostsChanged();
    return host;
  }

  /**
   * Registers the daemon, or brings an existing registration of the same host id up to date with its
   * address and token (`corral up` does this at every start for the local daemon).
   */
  async ensure(body: RegisterHost & { id: string }): Promise<HostRecord> {
    const known = await this.store.findHost(body.id);
    if (!known) return this.register(body);
    const { addr, uri } = hostAddress(body);
    const host = await this.store.updateHost(body.id, { addr, uri, token: body.token ?? null, kind: await this.drivers.probe(body.id, { uri, token: body.token ?? null }).catch(() => known.kind) });
    this.drivers.drop(body.id);
    await this.events.hostsChanged();
    return host;
  }

  get(id: string): Promise<HostRecord> {
    return this.store.getHost(id);
  }

  list(): Promise<HostRecord[]> {
    return this.store.listHosts();
  }

  /** Removes a host that holds no VMs of the controller (409 otherwise: delete its environments first). */
  async remove(id: string): Promise<void> {
    await this.store.deleteHost(id);
    this.drivers.drop(id);
    await this.events.hostsChanged();
  }
}
