// The /ws WebSocket (Virtumancer's): every client hears fleet events (`hosts-changed`, `vms-changed`,
// `envs-changed`); a client that sends `subscribe-vm-stats {hostId, vmName}` also gets `vm-stats-updated`
// for that VM every interval. A VM's host is polled only while some client of this process is subscribed
// to it: the last `unsubscribe-vm-stats` (or the last subscriber leaving) stops the polling. The plugin's
// scope, shared with the shell route, is set up in websockets.ts; its frames allow more than /ws does.
import type { FastifyInstance } from "fastify";
import type { RawData, WebSocket } from "ws";
import type { VmRef, WsServerMessage } from "../protocol/controller.ts";
import { HOST_ID_PATTERN } from "../protocol/controller.ts";
import { isHostname } from "../protocol/names.ts";
import type { Logger } from "../util/log.ts";
import type { FleetStore } from "./db/index.ts";
import type { FleetEvents } from "./events.ts";
import { assertWebSocketUpgrade } from "../http/upgrade.ts";
import { describeHostFailure, type HostLinks } from "./host-link.ts";

const MAX_MESSAGE_BYTES = 64 * 1024;
const hostIdRe = new RegExp(HOST_ID_PATTERN);

export interface LiveUpdatesDeps {
  store: FleetStore;
  links: HostLinks;
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
      return send(socket, errorMessage("invalid_json", "The message is not JSON: send {\"type\": ..., \"payload\": ...}"));
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
    if (!(await this.deps.store.findHost(ref.hostId))) {
      return send(socket, errorMessage("host_not_found", `Cannot subscribe to VM ${JSON.stringify(ref.vmName)}: host ${JSON.stringify(ref.hostId)} is not registered`));
    }
    if (socket.readyState !== socket.OPEN) return;
    let poller = this.pollers.get(key);
    if (!poller) {
      const created: Poller = { ref, subscribers: new Set(), busy: false, timer: setInterval(() => void this.poll(created), this.deps.statsIntervalMs) };
      poller = created;
      this.pollers.set(key, created);
      void this.poll(created);
    }
    poller.subscribers.add(socket);
  }

  private stopIfUnused(key: string, poller: Poller): void {
    if (poller.subscribers.size > 0) return;
    clearInterval(poller.timer);
    this.pollers.delete(key);
  }

  private async poll(poller: Poller): Promise<void> {
    if (poller.busy) return;
    poller.busy = true;
    try {
      const host = await this.deps.store.findHost(poller.ref.hostId);
      if (!host) return;
      const stats = await this.deps.links.forHost(host).stats(poller.ref.vmName);
      const message: WsServerMessage = { type: "vm-stats-updated", payload: { ...poller.ref, stats } };
      for (const client of poller.subscribers) send(client, message);
    } catch (err) {
      this.deps.log.debug({ vm: poller.ref, err: describeHostFailure(err) }, "Cannot read a VM's stats");
      const message = errorMessage("stats_unavailable", `Cannot read the stats of VM ${JSON.stringify(poller.ref.vmName)} on host ${JSON.stringify(poller.ref.hostId)}: ${describeHostFailure(err)}`);
      for (const client of poller.subscribers) send(client, message);
    } finally {
      poller.busy = false;
    }
  }
}

/** The payload's {hostId, vmName}, or why it is not one. */
function vmRef(payload: unknown): VmRef | string {
  const p = (payload ?? {}) as Partial<Record<keyof VmRef, unknown>>;
  if (typeof p.hostId !== "string" || !hostIdRe.test(p.hostId)) return `Invalid payload field "hostId" ${JSON.stringify(p.hostId)}: it must be a host id`;
  if (typeof p.vmName !== "string" || !isHostname(p.vmName)) return `Invalid payload field "vmName" ${JSON.stringify(p.vmName)}: it must be a VM name`;
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
