// The controller's calls to one host's daemon, over TTstack's agent API (/api/info, /api/vms…). Short
// deadlines for reads (a heartbeat must not hang on a dead host), longer ones for creates (QEMU starts).
// A VM's shell and serial log come from the daemon's Slicer API (/vm/NAME/shell, /vm/NAME/logs).
import type { Dispatcher } from "undici";
import type WebSocket from "ws";
import { CorralError, isErrorCode } from "../protocol/errors.ts";
import type { ShellQuery } from "../protocol/slicer.ts";
import type { AgentVm, AgentVmDetail, CreateAgentVm, HostInfo, VmStats } from "../protocol/ttstack-agent.ts";
import { CorralApiError, queryString, Transport } from "../sdk/transport.ts";
import { openWebSocket } from "../sdk/websocket.ts";

const READ_TIMEOUT_MS = 5000;
const CHANGE_TIMEOUT_MS = 120_000;
/** A whole log may take the daemon a while to read; this bounds the wait for each part of the answer. */
const STREAM_TIMEOUT_MS = 30_000;

export interface HostAddress {
  uri: string;
  token: string | null;
}

export class HostLink {
  private readonly transport: Transport;

  constructor(readonly address: HostAddress) {
    this.transport = new Transport({ url: address.uri, token: address.token ?? undefined, timeoutMs: READ_TIMEOUT_MS });
  }

  close(): Promise<void> {
    return this.transport.close();
  }

  info(): Promise<HostInfo> {
    return this.transport.json<HostInfo>("GET", "/api/info");
  }

  vms(): Promise<AgentVm[]> {
    return this.transport.json<AgentVm[]>("GET", "/api/vms");
  }

  vm(id: string): Promise<AgentVmDetail> {
    return this.transport.json<AgentVmDetail>("GET", `/api/vms/${encodeURIComponent(id)}`);
  }

  stats(id: string): Promise<VmStats> {
    return this.transport.json<VmStats>("GET", `/api/vms/${encodeURIComponent(id)}/stats`, undefined, 10_000);
  }

  createVm(body: CreateAgentVm): Promise<AgentVm> {
    return this.transport.json<AgentVm>("POST", "/api/vms", body, CHANGE_TIMEOUT_MS);
  }

  /** Deletes a VM; true when it is gone (also when the host never had it). */
  async deleteVm(id: string): Promise<true> {
    try {
      await this.transport.json("DELETE", `/api/vms/${encodeURIComponent(id)}`, undefined, CHANGE_TIMEOUT_MS);
    } catch (err) {
      if (!(err instanceof CorralApiError && err.status === 404)) throw err;
    }
    return true;
  }

  stopVm(id: string, options: { force?: boolean } = {}): Promise<AgentVm> {
    return this.transport.json<AgentVm>("POST", `/api/vms/${encodeURIComponent(id)}/stop${options.force ? "?force=true" : ""}`, undefined, CHANGE_TIMEOUT_MS);
  }

  startVm(id: string): Promise<AgentVm> {
    return this.transport.json<AgentVm>("POST", `/api/vms/${encodeURIComponent(id)}/start`, undefined, CHANGE_TIMEOUT_MS);
  }

  rebootVm(id: string, options: { force?: boolean } = {}): Promise<AgentVm> {
    return this.transport.json<AgentVm>("POST", `/api/vms/${encodeURIComponent(id)}/reboot${options.force ? "?force=true" : ""}`, undefined, CHANGE_TIMEOUT_MS);
  }

  /** The VM's shell WebSocket, once the daemon accepted it (a refusal is a CorralApiError with its code). */
  openShell(name: string, query: ShellQuery, signal: AbortSignal): Promise<WebSocket> {
    const path = `/vm/${encodeURIComponent(name)}/shell${queryString({ ...query })}`;
    return openWebSocket({ url: this.address.uri, token: this.address.token ?? undefined }, path, {}, signal);
  }

  /** The VM's serial console log as the daemon answers it, its body still to be read. */
  logs(name: string, query: { lines?: number }, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
    return this.transport.send("GET", `/vm/${encodeURIComponent(name)}/logs${queryString({ ...query })}`, { signal, timeoutMs: STREAM_TIMEOUT_MS });
  }
}

/** One link per host, kept while the host's address is the same. */
export class HostLinks {
  private readonly links = new Map<string, HostLink>();

  /** The link to a registered host (anything with its id, uri and token: a record or an endpoint). */
  forHost(host: { id: string } & HostAddress): HostLink {
    return this.for(host.id, { uri: host.uri, token: host.token });
  }

  for(hostId: string, address: HostAddress): HostLink {
    const known = this.links.get(hostId);
    if (known && known.address.uri === address.uri && known.address.token === address.token) return known;
    void known?.close();
    const link = new HostLink(address);
    this.links.set(hostId, link);
    return link;
  }

  drop(hostId: string): void {
    void this.links.get(hostId)?.close();
    this.links.delete(hostId);
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.links.values()].map((l) => l.close()));
    this.links.clear();
  }
}

/** A host's answer passed on: its 4xx keep their status and code; anything else means it cannot be reached. */
export function hostFailure(hostId: string, err: unknown): Error {
  if (err instanceof CorralError) return err;
  if (err instanceof CorralApiError && err.status < 500) return new CorralError(isErrorCode(err.code) ? err.code : "invalid_request", err.message, { status: err.status, cause: err });
  // The host answered that it cannot serve this yet (a VM still booting: 503 agent_unavailable) or that its
  // disk is full (507 insufficient_storage, a VM frozen by it): say that, not that the host is unreachable.
  if (err instanceof CorralApiError && (err.status === 503 || err.status === 507) && isErrorCode(err.code)) return new CorralError(err.code, err.message, { status: err.status, cause: err });
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
