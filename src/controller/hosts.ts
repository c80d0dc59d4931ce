// The host registry: hosts registered by TTstack's `{addr}` or Virtumancer's `{id, uri}`, checked by
// asking the host for its /api/info before they are stored (which also tells a Corral daemon from a TTstack
// agent: host-driver.ts), removed only when they hold no VMs of the controller. A libvirt URI (`qemu:///system`,
// `qemu+ssh://user@host/system`) is a libvirt daemon: its URI is checked by parseLibvirtUri (a parameter that
// could run something on this machine is refused), then the daemon is asked through its driver, not over HTTP.
// Heartbeats (heartbeat.ts) keep their state and reports fresh. A host that does not answer, or answers
// something the controller cannot read, is refused with 502 and nothing is stored.
import { CorralError } from "../protocol/errors.ts";
import type { Host, RegisterHost } from "../protocol/controller.ts";
import { HOST_ID_PATTERN } from "../protocol/controller.ts";
import type { FleetStore, HostRecord } from "./db/index.ts";
import type { FleetEvents } from "./events.ts";
import { TT_ENGINES, unixSeconds } from "../protocol/ttstack.ts";
import { CorralApiError } from "../sdk/transport.ts";
import { isLibvirtUri, parseLibvirtUri } from "./drivers/libvirt-driver.ts";
import { describeHostFailure, type HostDrivers } from "./host-driver.ts";
import type { HostKind, HostReport, ReportedVm } from "./host-report.ts";

const hostIdRe = new RegExp(HOST_ID_PATTERN);

/** `addr` (HOST:PORT) and `uri` (http://HOST:PORT) of a registration, each derived from the other. */
export function hostAddress(body: Pick<RegisterHost, "addr" | "uri">): { addr: string; uri: string } {
  if (body.addr === undefined && body.uri === undefined) {
    throw new CorralError("invalid_request", 'Missing body field "addr" (HOST:PORT) or "uri" (http://HOST:PORT): give one');
  }
  if (body.addr !== undefined && body.uri !== undefined) {
    const fromAddr = parseUri(`http://${body.addr}`, "addr");
    const fromUri = parseUri(body.uri, "uri");
    if (fromAddr.host !== fromUri.host)
      throw new CorralError("invalid_request", `The "addr" ${JSON.stringify(body.addr)} and the "uri" ${JSON.stringify(body.uri)} name different hosts: give one`);
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
    throw new CorralError(
      "invalid_request",
      field === "addr" ? `Invalid "addr" ${JSON.stringify(text.slice(7))}: it must be HOST:PORT` : `Invalid "uri" ${JSON.stringify(text)}: it must be http://HOST:PORT`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new CorralError(
      "invalid_request",
      `Cannot reach a host by ${JSON.stringify(text)}: give http://HOST:PORT or https://HOST:PORT (a Corral daemon or a TTstack agent) or a libvirt URI (qemu:///system, qemu+ssh://USER@HOST/system)`,
    );
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
    // As the host reported them, those TTstack has names for (a libvirt daemon's may be others): TTstack's
    // clients read this list against its enum.
    engines: (info?.engines ?? []).filter((engine): engine is Engines[number] => (TT_ENGINES as readonly string[]).includes(engine)),
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
  // A driver's own verdict (a libvirt daemon that virsh cannot reach says why in its message).
  if (err instanceof CorralError) return new CorralError("host_unreachable", `${prefix}: ${err.message}`, { cause: err });
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
    if (body.uri !== undefined && isLibvirtUri(body.uri)) return this.registerLibvirt({ ...body, uri: body.uri });
    const { addr, uri } = hostAddress(body);
    const token = body.token ?? null;
    const name = body.id ?? addr;
    const { kind, info, vms } = await this.ask(name, uri, async () => {
      const kind = await this.drivers.probe(name, { uri, token });
      return { kind, ...(await this.report(name, { uri, token, kind })) };
    });
    return this.insert(body.id ?? info.id, { addr, uri, token, kind }, info, vms);
  }

  /**
   * A libvirt daemon by its URI (Virtumancer's reason to exist): no token (the URI says how to authenticate,
   * e.g. ssh's `keyfile`), no HTTP probe; its driver must answer before it is stored, as any host's must.
   */
  private async registerLibvirt(body: RegisterHost & { uri: string }): Promise<HostRecord> {
    const parsed = parseLibvirtUri(body.uri);
    if ("problem" in parsed) throw new CorralError("invalid_request", `Invalid "uri": ${parsed.problem}`);
    if (body.addr !== undefined) throw new CorralError("invalid_request", `A libvirt host is reached by its "uri" only: leave out "addr" ${JSON.stringify(body.addr)}`);
    if (body.token !== undefined)
      throw new CorralError("invalid_request", 'A libvirt host takes no "token": its URI says how to authenticate (qemu+ssh: the ssh key, e.g. ?keyfile=PATH)');
    const address = { uri: parsed.uri, token: null, kind: "libvirt" as const };
    // TTstack's `addr` is where a VM's ports are reached: the libvirt daemon's machine.
    const addr = parsed.host === null ? "localhost" : parsed.port === null ? parsed.host : `${parsed.host}:${parsed.port}`;
    const name = body.id ?? parsed.uri;
    const { info, vms } = await this.ask(name, parsed.uri, () => this.report(name, address));
    return this.insert(body.id ?? info.id, { ...address, addr }, info, vms);
  }

  /** `call`, its failure as registrationFailure says. */
  private async ask<T>(name: string, uri: string, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw registrationFailure(name, uri, err);
    }
  }

  /** The host's report and VMs, asked through a driver of its own (it is not registered yet). */
  private async report(name: string, address: { uri: string; token: string | null; kind: HostKind }): Promise<{ info: HostReport; vms: ReportedVm[] }> {
    const driver = this.drivers.unregistered(name, address);
    try {
      const [info, vms] = await Promise.all([driver.info(), driver.vms()]);
      return { info, vms };
    } finally {
      await driver.close();
    }
  }

  private async insert(id: string, address: { addr: string; uri: string; token: string | null; kind: HostKind }, info: HostReport, vms: ReportedVm[]): Promise<HostRecord> {
    if (!hostIdRe.test(id)) throw new CorralError("invalid_request", `The host reports the id ${JSON.stringify(id)}, which cannot be used: give an "id"`);
    const now = new Date().toISOString();
    const host = await this.store.insertHost({ id, ...address, state: "online", hostname: info.hostname, info, vms, lastSeenAt: now });
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
    const host = await this.store.updateHost(body.id, {
      addr,
      uri,
      token: body.token ?? null,
      kind: await this.drivers.probe(body.id, { uri, token: body.token ?? null }).catch(() => known.kind),
    });
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
