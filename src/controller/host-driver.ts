// The controller's calls to its hosts, behind one interface per host whatever its kind (the HostDriver seam
// of DESIGN.md): a Corral daemon (drivers/corral-daemon-driver.ts) or a TTstack agent
// (drivers/ttstack-agent-driver.ts), both reached over TTstack's agent API (/api/info, /api/vms…) and read into
// the controller's own shapes (host-report.ts). What a kind of host cannot do is 422 `unsupported_by_host`.
// Credentials: a host's own token when it was registered with one, else the controller's API key, which
// TTstack's controller sends to all its agents (its agents share that key).
import type WebSocket from "ws";
import { CorralError, isErrorCode } from "../protocol/errors.ts";
import type { ShellQuery } from "../protocol/slicer.ts";
import type { CreateAgentVm, VmStats } from "../protocol/ttstack-agent.ts";
import { CorralApiError, type HttpResponse } from "../sdk/transport.ts";
import type { HostKind, HostReport, ReportedVm, ReportedVmDetail } from "./host-report.ts";
import { Type } from "@sinclair/typebox";
import { AgentApi, READ_TIMEOUT_MS } from "./drivers/agent-api.ts";
import { CorralDaemonDriver } from "./drivers/corral-daemon-driver.ts";
import { LibvirtDriver } from "./drivers/libvirt-driver.ts";
import { TTstackAgentDriver } from "./drivers/ttstack-agent-driver.ts";

/** A probe reads only `corral_version` of whatever object /api/info is (one schema object: its check is compiled once). */
const ANY_OBJECT = Type.Object({});

export interface HostAddress {
  uri: string;
  /** The host's own token; null: the controller's key, if it has one. */
  token: string | null;
  kind: HostKind;
}

/** One host, as the controller calls it. */
export interface HostDriver {
  readonly kind: HostKind;
  close(): Promise<void>;
  info(): Promise<HostReport>;
  vms(): Promise<ReportedVm[]>;
  vm(id: string): Promise<ReportedVmDetail>;
  stats(id: string): Promise<VmStats>;
  createVm(body: CreateAgentVm): Promise<ReportedVm>;
  /** Deletes a VM; true when it is gone (also when the host never had it). */
  deleteVm(id: string): Promise<true>;
  /** The VM as it is once stopped (`force`: without flushing its disks, where the host can tell the two apart). */
  stopVm(id: string, options?: { force?: boolean }): Promise<ReportedVm>;
  startVm(id: string): Promise<ReportedVm>;
  rebootVm(id: string, options?: { force?: boolean }): Promise<ReportedVm>;
  /** The VM's shell WebSocket, once the host accepted it (a refusal is a CorralApiError with its code). */
  openShell(name: string, query: ShellQuery, signal: AbortSignal): Promise<WebSocket>;
  /** The VM's serial console log as the host answers it, its body still to be read. */
  logs(name: string, query: { lines?: number }, signal: AbortSignal): Promise<HttpResponse>;
}

export interface HostDriversOptions {
  /** The controller's API key: sent to hosts registered without a token of their own. */
  sharedKey?: string;
}

/** One driver per host, kept while the host's address is the same. */
export class HostDrivers {
  private readonly drivers = new Map<string, { address: HostAddress; driver: HostDriver }>();

  constructor(private readonly options: HostDriversOptions = {}) {}

  /** The driver to a registered host (anything with its id, uri, token and kind: a record or an endpoint). */
  forHost(host: { id: string } & HostAddress): HostDriver {
    return this.for(host.id, { uri: host.uri, token: host.token, kind: host.kind });
  }

  for(hostId: string, address: HostAddress): HostDriver {
    const known = this.drivers.get(hostId);
    if (known && known.address.uri === address.uri && known.address.token === address.token && known.address.kind === address.kind) return known.driver;
    void known?.driver.close();
    const driver = this.make(hostId, address);
    this.drivers.set(hostId, { address, driver });
    return driver;
  }

  /**
   * A driver to a host not registered (yet), named `name` in what it says, kept nowhere (so never in the way of
   * a registered host's): the caller closes it.
   */
  unregistered(name: string, address: HostAddress): HostDriver {
    return this.make(name, address);
  }

  private make(hostId: string, address: HostAddress): HostDriver {
    const token = address.token ?? this.options.sharedKey;
    switch (address.kind) {
      case "ttstack":
        return new TTstackAgentDriver(hostId, { uri: address.uri, token });
      case "libvirt":
        return new LibvirtDriver(hostId, { uri: address.uri });
      case "corral":
        return new CorralDaemonDriver(hostId, { uri: address.uri, token });
    }
  }

  /**
   * What kind of host answers at `uri` (asked before it is registered): a Corral daemon says
   * `corral_version` in its /api/info, a TTstack agent does not. Throws what `info()` would.
   */
  async probe(name: string, address: Omit<HostAddress, "kind">): Promise<HostKind> {
    const api = new AgentApi(name, { uri: address.uri, token: address.token ?? this.options.sharedKey }, READ_TIMEOUT_MS);
    try {
      const info = await api.data<{ corral_version?: unknown }>("GET", "/api/info", ANY_OBJECT);
      return typeof info.corral_version === "string" ? "corral" : "ttstack";
    } finally {
      await api.close();
    }
  }

  drop(hostId: string): void {
    void this.drivers.get(hostId)?.driver.close();
    this.drivers.delete(hostId);
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.drivers.values()].map(({ driver }) => driver.close()));
    this.drivers.clear();
  }
}

/**
 * A host's answer passed on: its 4xx keep their status and code; one the controller cannot use stays
 * `host_bad_answer` (502); a 5xx is a bad answer too; a host that did not answer is `host_unreachable`.
 */
export function hostFailure(hostId: string, err: unknown): Error {
  if (err instanceof CorralError) return err;
  if (err instanceof CorralApiError && err.status < 500)
    return new CorralError(isErrorCode(err.code) ? err.code : "invalid_request", err.message, { status: err.status, cause: err });
  // The host answered that it cannot serve this yet (a VM still booting: 503 agent_unavailable) or that its
  // disk is full (507 insufficient_storage, a VM frozen by it): say that, not that the host is unreachable.
  if (err instanceof CorralApiError && (err.status === 503 || err.status === 507) && isErrorCode(err.code))
    return new CorralError(err.code, err.message, { status: err.status, cause: err });
  if (err instanceof CorralApiError)
    return new CorralError("host_bad_answer", `Host ${JSON.stringify(hostId)} answered ${err.method} ${err.path} with ${err.status}: ${err.message}`, { cause: err });
  return new CorralError("host_unreachable", `Host ${JSON.stringify(hostId)} did not answer: ${(err as Error).message}`, { cause: err });
}

/** A host's answer as one line for a VM's `error` or a log: its message, or why it could not be reached. */
export function describeHostFailure(err: unknown): string {
  if (err instanceof CorralApiError) return `${err.message} (${err.status} ${err.code})`;
  // The controller's own verdict on an answer (e.g. a VM of that name that is not this one) says it all.
  if (err instanceof CorralError) return err.message;
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code) return `the host cannot be reached (${cause.code})`;
  return err instanceof Error ? err.message : String(err);
}
