// What every WebSocket route of the daemon does before it answers 101: refuse requests that are not a
// well-formed WebSocket upgrade with a JSON error (ws itself would answer a bare 400), and hold the agent
// stream that was opened for the request until the WebSocket handler takes it over, closing it if the
// handshake never completes.
import type { FastifyRequest } from "fastify";
import { CorralError } from "../protocol/errors.ts";

const WEBSOCKET_KEY = /^[+/0-9A-Za-z]{22}==$/;

/** Throws 426 for a plain HTTP request and 400 for a broken upgrade, naming what is missing. */
export function assertWebSocketUpgrade(request: FastifyRequest, route: string): void {
  const headers = request.headers;
  if (!request.ws) {
    throw new CorralError("upgrade_required", `${route} is a WebSocket: send the request with "Connection: Upgrade" and "Upgrade: websocket"`);
  }
  if (String(headers.upgrade ?? "").toLowerCase() !== "websocket") {
    throw new CorralError("invalid_request", `Invalid header "Upgrade" ${JSON.stringify(headers.upgrade ?? "")}: it must be "websocket"`);
  }
  const key = headers["sec-websocket-key"];
  if (typeof key !== "string" || !WEBSOCKET_KEY.test(key.trim())) {
    throw new CorralError("invalid_request", 'Missing or invalid header "Sec-WebSocket-Key": it must be 16 random bytes in base64');
  }
  const version = headers["sec-websocket-version"];
  if (version !== "13" && version !== "8") {
    throw new CorralError("invalid_request", `Invalid header "Sec-WebSocket-Version" ${JSON.stringify(version ?? "")}: this server speaks version 13`);
  }
}

/**
 * Whatever a route prepared for a request before the upgrade (an open agent stream), kept until the
 * WebSocket handler claims it. If the client's socket closes first (the handshake failed or the client
 * left), `release` runs instead, so nothing is left open in the guest.
 */
export class PendingUpgrades<T> {
  private readonly pending = new WeakMap<FastifyRequest, T>();

  hold(request: FastifyRequest, value: T, release: (value: T) => void): void {
    this.pending.set(request, value);
    request.raw.socket.once("close", () => {
      const left = this.pending.get(request);
      if (left === undefined) return;
      this.pending.delete(request);
      release(left);
    });
  }

  claim(request: FastifyRequest): T | undefined {
    const value = this.pending.get(request);
    this.pending.delete(request);
    return value;
  }
}

/** Aborts when the client's connection closes before the route is done preparing. */
export function abortOnDisconnect(request: FastifyRequest): AbortSignal {
  const controller = new AbortController();
  const socket = request.raw.socket;
  if (socket.destroyed) controller.abort();
  else socket.once("close", () => controller.abort());
  return controller.signal;
}
