// GET /vm/HOST/forward: one forwarded TCP (or unix socket) connection as a WebSocket. The address inside
// the guest comes from the X-Inlets-Upstream header (Slicer's and inlets' convention). The agent connects
// before the 101 answer; when it cannot, the WebSocket is accepted and closed at once with code 1014 and
// the reason (Slicer's Go client insists on a 101).
import type { FastifyRequest } from "fastify";
import type { WebSocket } from "ws";
import { CorralError } from "../../protocol/errors.ts";
import { formatForwardTarget, parseForwardTarget, TARGET_FORMS, UPSTREAM_HEADER, type ForwardTarget } from "../../protocol/forward.ts";
import { CLOSE_CODE, closeReason } from "../../protocol/shell.ts";
import { VmParams } from "../../protocol/slicer.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import { openForward, type ForwardOpening } from "../websocket/agent-sessions.ts";
import { relayForward } from "../websocket/forward-relay.ts";
import { abortOnDisconnect, assertWebSocketUpgrade, PendingUpgrades } from "../../http/upgrade.ts";

export function upstreamFromHeaders(headers: FastifyRequest["headers"]): ForwardTarget {
  const value = headers[UPSTREAM_HEADER];
  if (value === undefined || value === "") {
    throw new CorralError("invalid_request", `Missing header "X-Inlets-Upstream": name the address to connect to inside the VM, as ${TARGET_FORMS}`);
  }
  if (Array.isArray(value)) throw new CorralError("invalid_request", 'Header "X-Inlets-Upstream" was given more than once: send one address');
  try {
    return parseForwardTarget(value);
  } catch (err) {
    throw new CorralError("invalid_request", `Invalid header "X-Inlets-Upstream": ${(err as Error).message}`);
  }
}

interface PendingForward {
  target: string;
  opening: ForwardOpening;
}

export function forwardRoute(app: DaemonApp, ctx: DaemonContext): void {
  const pending = new PendingUpgrades<PendingForward>();
  const release = ({ opening }: PendingForward): void => {
    if (!opening.connected) return;
    opening.cancel();
    opening.toAgent.destroy();
  };

  app.route({
    method: "GET",
    url: "/vm/:hostname/forward",
    schema: { params: VmParams },
    preHandler: async (request) => {
      const { hostname } = request.params;
      ctx.manager.get(hostname);
      assertWebSocketUpgrade(request, "GET /vm/HOST/forward");
      const target = upstreamFromHeaders(request.headers);
      const opening = await openForward(ctx.manager, hostname, target, abortOnDisconnect(request));
      pending.hold(request, { target: formatForwardTarget(target), opening }, release);
    },
    // Only reached by a HEAD request: a plain GET was refused (426) before this.
    handler: async (_request, reply) => reply.code(426).send({ error: "GET /vm/HOST/forward is a WebSocket", code: "upgrade_required" }),
    wsHandler: (socket: WebSocket, request) => {
      const held = pending.claim(request);
      if (!held) return socket.close(CLOSE_CODE.internalError, "The connection was lost before the WebSocket opened");
      const { opening, target } = held;
      const { hostname } = request.params as { hostname: string };
      if (!opening.connected) {
        request.log.info({ vm: hostname, target, reason: opening.reason }, "Forward refused in the guest");
        return socket.close(CLOSE_CODE.badGateway, closeReason(opening.reason));
      }
      request.log.debug({ vm: hostname, target }, "Forwarded connection opened");
      relayForward(socket, opening, target);
    },
  });
}
