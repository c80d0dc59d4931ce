// The /ws WebSocket (Virtumancer's, docs/virtumancer-wire-notes.md §9): every client hears fleet events
// (`hosts-changed`, `vms-changed`, `host-connection-changed`, Corral's `envs-changed`); a client that sends
// `subscribe-vm-stats {hostId, vmName}` also gets `vm-stats-updated` for that VM every interval. A VM's host is
// polled only while some client of this process is subscribed to it: the last `unsubscribe-vm-stats` (or the
// last subscriber leaving) stops the polling. As Virtumancer's poller does, a VM that does not run, or that
// its host does not have, is reported once (libvirt's numbers for a domain that is shut off) and the polling
// ends with its subscriptions: a later subscribe starts again. A host that does not answer is asked again
// next time (it may come back with the VM still running). The plugin's scope, shared with the shell route,
// is set up in websockets.ts; its frames allow more than /ws does.
import type { FastifyInstance } from "fastify";
import type { RawData, WebSocket } from "ws";
import type { VmRef, WsServerMessage } from "../protocol/controller.ts";
import { HOST_ID_PATTERN, HOST_VM_NAME_PATTERN } from "../protocol/controller.ts";
import { CorralError, quote } from "../protocol/errors.ts";
import type { VmStats } from "../protocol/ttstack-agent.ts";
import { CorralApiError } from "../sdk/transport.ts";
import type { Logger } from "../util/log.ts";
import type { FleetStore } from "./db/index.ts";
import type { FleetEvents } from "./events.ts";
import { assertWebSocketUpgrade } from "../http/upgrade.ts";
import { describeHostFailure, type HostDrivers } from "./host-driver.ts";

const MAX_MESSAGE_BYTES = 64 * 1024;
const hostIdRe = new RegExp(HOST_ID_PATTERN);
/** A daemon's VM (a hostname) or a libvirt host's domain. */
const vmNameRe = new RegExp(HOST_VM_NAME_PATTERN);
/** libvirt's virDomainState for a running domain: the only state whose stats keep being polled. */
const RUNNING = 1;
/** What Virtumancer's poller sends for a domain it cannot read: shut off, every number zero. */
const SHUT_OFF: VmStats = { state: 5, memory: 0, max_mem: 0, vcpu: 0, cpu_time: 0, disk_stats: [], net_stats: [] };

export interface LiveUpdatesDeps {
  store: FleetStore;
  drivers: HostDrivers;
  events: FleetEvents;
  log: Logger;
  statsIntervalMs: number;
}

interface Poller {
  ref: VmRef;
  subscribers: Set<WebSocket>;
  timer: NodeJS.Timeout;
  busy: boolean;
}

export class LiveUpdates {
  private readonly clients = new Set<WebSocket>();
  private readonly pollers = new Map<string, Poller>();
  private readonly unsubscribeEvents: () => void;

  constructor(private readonly deps: LiveUpdatesDeps) {
    this.unsubscribeEvents = deps.events.subscribe((event) => {
      for (const client of this.clients) send(client, event);
    });
  }

  /** Clients connected to this process, and VMs whose stats it polls (for /healthz and tests). */
  counts(): { clients: number; statsPollers: number } {
    return { clients: this.clients.size, statsPollers: this.pollers.size };
  }

  /**
   * Registers GET /ws in the scope that has the WebSocket plugin. Like every route it needs the API key, which
   * a browser's WebSocket can only send as `?token=KEY`.
   */
  route(scope: FastifyInstance): void {
    scope.route({
      method: "GET",
      url: "/ws",
      config: { access: "token-or-query" },
      schema: { hide: true },
      // A request that is not a well-formed upgrade gets a JSON answer (426 or 400), as the shell routes do.
      preHandler: async (request) => assertWebSocketUpgrade(request, "GET /ws"),
      // Only reached by a HEAD request: a plain GET was refused (426) before this.
      handler: async (_request, reply) => reply.code(426).send({ error: "GET /ws is a WebSocket", code: "upgrade_required" }),
      wsHandler: (socket) => this.accept(socket),
    });
  }

  close(): void {
    this.unsubscribeEvents();
    for (const poller of this.pollers.values()) clearInterval(poller.timer);
    this.pollers.clear();
    for (const client of this.clients) client.close(1001, "The controller is shutting down");
    this.clients.clear();
  }

  private accept(socket: WebSocket): void {
    this.clients.add(socket);
    socket.on("message", (data, isBinary) => {
      if (messageBytes(data) > MAX_MESSAGE_BYTES) return socket.close(1009, `Messages on /ws are at most ${MAX_MESSAGE_BYTES} bytes`);
      if (isBinary) return send(socket, errorMessage("invalid_request", "Send JSON text messages"));
      void this.handle(socket, data.toString());
    });
    socket.on("close", () => {
      this.clients.delete(socket);
      for (const [key, poller] of this.pollers) if (poller.subscribers.delete(socket)) this.stopIfUnused(key, poller);
    });
  }

  private async handle(socket: WebSocket, text: string): Promise<void> {
    let message: { type?: unknown; payload?: unknown };
    try {
      message = JSON.parse(text) as typeof message;
    } catch {
      return send(socket, errorMessage("invalid_json", 'The message is not JSON: send {"type": ..., "payload": ...}'));
    }
    if (message.type !== "subscribe-vm-stats" && message.type !== "unsubscribe-vm-stats") {
      return send(socket, errorMessage("invalid_request", `Unknown message type ${JSON.stringify(message.type)}: send "subscribe-vm-stats" or "unsubscribe-vm-stats"`));
    }
    const ref = vmRef(message.payload);
    if (typeof ref === "string") return send(socket, errorMessage("invalid_request", ref));
    const key = `${ref.hostId}/${ref.vmName}`;
    if (message.type === "unsubscribe-vm-stats") {
      const poller = this.pollers.get(key);
      if (poller?.subscribers.delete(socket)) this.stopIfUnused(key, poller);
      return;
    }
    const host = await this.deps.store.findHost(ref.hostId);
    if (!host) {
      // An unknown VM, as Virtumancer reports one: shut off, once; and why.
      send(socket, statsMessage(ref, SHUT_OFF));
      return send(socket, errorMessage("host_not_found", `Cannot subscribe to VM ${quote(ref.vmName)}: host ${quote(ref.hostId)} is not registered`));
    }
    if (host.disconnected) return send(socket, disconnectedMessage(ref));
    if (socket.readyState !== socket.OPEN) return;
    let poller = this.pollers.get(key);
    if (!poller) {
      const created: Poller = { ref, subscribers: new Set(), busy: false, timer: setInterval(() => void this.poll(key, created), this.deps.statsIntervalMs) };
      poller = created;
      this.pollers.set(key, created);
      void this.poll(key, created);
    }
    poller.subscribers.add(socket);
  }

  private stopIfUnused(key: string, poller: Poller): void {
    if (poller.subscribers.size > 0) return;
    clearInterval(poller.timer);
    this.pollers.delete(key);
  }

  /** Stops polling and drops its subscriptions, after telling the subscribers `messages`. */
  private end(key: string, poller: Poller, messages: WsServerMessage[]): void {
    for (const client of poller.subscribers) for (const message of messages) send(client, message);
    clearInterval(poller.timer);
    poller.subscribers.clear();
    if (this.pollers.get(key) === poller) this.pollers.delete(key);
  }

  private async poll(key: string, poller: Poller): Promise<void> {
    if (poller.busy || this.pollers.get(key) !== poller) return;
    poller.busy = true;
    const { ref } = poller;
    try {
      const host = await this.deps.store.findHost(ref.hostId);
      if (!host) return this.end(key, poller, [statsMessage(ref, SHUT_OFF), errorMessage("host_not_found", `Host ${quote(ref.hostId)} is no longer registered`)]);
      if (host.disconnected) return this.end(key, poller, [disconnectedMessage(ref)]);
      let stats: VmStats;
      try {
        stats = await this.deps.drivers.forHost(host).stats(ref.vmName);
      } catch (err) {
        // A daemon's 404 over HTTP, or a driver's own verdict (a libvirt host with no such domain).
        if ((err instanceof CorralApiError || err instanceof CorralError) && err.status === 404) {
          return this.end(key, poller, [statsMessage(ref, SHUT_OFF), errorMessage("vm_not_found", `Host ${quote(ref.hostId)} has no VM ${quote(ref.vmName)}`)]);
        }
        this.deps.log.debug({ vm: ref, err: describeHostFailure(err) }, "Cannot read a VM's stats");
        const message = errorMessage("stats_unavailable", `Cannot read the stats of VM ${quote(ref.vmName)} on host ${quote(ref.hostId)}: ${describeHostFailure(err)}`);
        for (const client of poller.subscribers) send(client, message);
        return;
      }
      // Polling ended while the host answered (the last subscriber left): nothing to tell.
      if (this.pollers.get(key) !== poller) return;
      if (stats.state !== RUNNING) return this.end(key, poller, [statsMessage(ref, stats)]);
      const message = statsMessage(ref, stats);
      for (const client of poller.subscribers) send(client, message);
    } catch (err) {
      this.deps.log.warn({ vm: ref, err }, "A VM's stats poll failed");
    } finally {
      poller.busy = false;
    }
  }
}

function statsMessage(ref: VmRef, stats: VmStats): WsServerMessage {
  return { type: "vm-stats-updated", payload: { hostId: ref.hostId, vmName: ref.vmName, stats } };
}

function disconnectedMessage(ref: VmRef): WsServerMessage {
  return errorMessage("conflict", `Cannot read the stats of VM ${quote(ref.vmName)}: host ${quote(ref.hostId)} is disconnected (POST /api/v1/hosts/${ref.hostId}/connect)`);
}

/** The payload's {hostId, vmName}, or why it is not one. */
function vmRef(payload: unknown): VmRef | string {
  const p = (payload ?? {}) as Partial<Record<keyof VmRef, unknown>>;
  if (typeof p.hostId !== "string" || !hostIdRe.test(p.hostId)) return `Invalid payload field "hostId" ${JSON.stringify(p.hostId)}: it must be a host id`;
  if (typeof p.vmName !== "string" || !vmNameRe.test(p.vmName)) return `Invalid payload field "vmName" ${JSON.stringify(p.vmName)}: it must be a VM name`;
  return { hostId: p.hostId, vmName: p.vmName };
}

function errorMessage(code: string, error: string): WsServerMessage {
  return { type: "error", payload: { error, code } };
}

function messageBytes(data: RawData): number {
  return Array.isArray(data) ? data.reduce((sum, part) => sum + part.byteLength, 0) : data.byteLength;
}

function send(socket: WebSocket, message: WsServerMessage): void {
  if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message));
}
