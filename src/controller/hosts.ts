// The host registry: hosts registered by TTstack's `{addr}` or Virtumancer's `{id, uri}`, checked by
// asking the daemon for its /api/info before they are stored, removed only when they hold no VMs of the
// controller. Heartbeats (heartbeat.ts) keep their state and reports fresh.
import { CorralError } from "../protocol/errors.ts";
import type { Host, RegisterHost } from "../protocol/controller.ts";
import { HOST_ID_PATTERN } from "../protocol/controller.ts";
import type { FleetStore, HostRecord } from "./db/index.ts";
import type { FleetEvents } from "./events.ts";
import { describeHostFailure, type HostLinks } from "./host-link.ts";

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

/** A host as the API shows it. */
export function hostView(host: HostRecord): Host {
  const info = host.info;
  return {
    id: host.id,
    addr: host.addr,
    uri: host.uri,
    state: host.state,
    hostname: host.hostname,
    resource: {
      cpu_total: info?.cpu_total ?? 0,
      cpu_used: info?.cpu_used ?? 0,
      mem_total: info?.mem_total ?? 0,
      mem_used: info?.mem_used ?? 0,
      disk_total: info?.disk_total ?? 0,
      disk_used: info?.disk_used ?? 0,
      vm_count: info?.vm_count ?? 0,
    },
    reserved: host.reserved,
    engines: info?.engines ?? [],
    storage: info?.storage ?? "file",
    images: info?.images ?? [],
    vm_count: host.vms.length,
    created_at: host.createdAt,
    registered_at: host.registeredAt,
    last_seen_at: host.lastSeenAt,
    last_error: host.lastError,
  };
}

export class HostRegistry {
  constructor(
    private readonly store: FleetStore,
    private readonly links: HostLinks,
    private readonly events: FleetEvents,
  ) {}

  /** Registers a daemon after it answered /api/info; its id is the one given, else the daemon's own. */
  async register(body: RegisterHost): Promise<HostRecord> {
    const { addr, uri } = hostAddress(body);
    const token = body.token ?? null;
    const link = this.links.for(`pending:${uri}`, { uri, token });
    let info;
    let vms;
    try {
      [info, vms] = await Promise.all([link.info(), link.vms()]);
    } catch (err) {
      throw new CorralError("host_unreachable", `Cannot register host ${JSON.stringify(body.id ?? addr)}: ${uri} did not answer GET /api/info: ${describeHostFailure(err)}`, { cause: err });
    } finally {
      this.links.drop(`pending:${uri}`);
    }
    const id = body.id ?? info.id;
    if (!hostIdRe.test(id)) throw new CorralError("invalid_request", `The host reports the id ${JSON.stringify(id)}, which cannot be used: give an "id"`);
    const now = new Date().toISOString();
    const host = await this.store.insertHost({ id, addr, uri, token, state: "online", hostname: info.hostname, info, vms, lastSeenAt: now });
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
    const host = await this.store.updateHost(body.id, { addr, uri, token: body.token ?? null });
    this.links.drop(body.id);
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
    this.links.drop(id);
    await this.events.hostsChanged();
  }
}
