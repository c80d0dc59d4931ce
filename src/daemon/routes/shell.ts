// GET /vm/HOST/shell: an interactive shell as a WebSocket (Slicer's binary frames, see protocol/shell.ts).
// Everything that can go wrong is answered as HTTP before the upgrade: unknown VM 404, paused 409, bad
// query 400, no such shell or directory in the guest 400, not a WebSocket 426.
import type { WebSocket } from "ws";
import { CLOSE_CODE, type ShellSpec } from "../../protocol/shell.ts";
import { ShellQuerySchema, VmParams, type ShellQuery } from "../../protocol/slicer.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import { openShell, type AgentDuplex } from "../websocket/agent-sessions.ts";
import { relayShell } from "../websocket/shell-relay.ts";
import { abortOnDisconnect, assertWebSocketUpgrade, PendingUpgrades } from "../../http/upgrade.ts";

/** Empty values mean "the default", as Slicer's CLI may send `shell=`. */
export function shellSpecFromQuery(query: ShellQuery): ShellSpec {
  const spec: ShellSpec = {};
  if (query.uid !== undefined) spec.uid = query.uid;
  if (query.gid !== undefined) spec.gid = query.gid;
  if (query.shell) spec.shell = query.shell;
  if (query.cwd) spec.cwd = query.cwd;
  return spec;
}

export function shellRoute(app: DaemonApp, ctx: DaemonContext): void {
  const pending = new PendingUpgrades<AgentDuplex>();
  const release = (duplex: AgentDuplex): void => {
    duplex.cancel();
    duplex.toAgent.destroy();
  };

  app.route({
    method: "GET",
    url: "/vm/:hostname/shell",
    schema: { params: VmParams, querystring: ShellQuerySchema },
    preHandler: async (request) => {
      const { hostname } = request.params;
      ctx.manager.get(hostname);
      assertWebSocketUpgrade(request, "GET /vm/HOST/shell");
      const duplex = await openShell(ctx.manager, hostname, shellSpecFromQuery(request.query), abortOnDisconnect(request));
      pending.hold(request, duplex, release);
    },
    // Only reached by a HEAD request: a plain GET was refused (426) before this.
    handler: async (_request, reply) => reply.code(426).send({ error: "GET /vm/HOST/shell is a WebSocket", code: "upgrade_required" }),
    wsHandler: (socket: WebSocket, request) => {
      const duplex = pending.claim(request);
      if (!duplex) return socket.close(CLOSE_CODE.internalError, "The shell was lost before the session started");
      const { hostname } = request.params as { hostname: string };
      request.log.info({ vm: hostname }, "Shell session started");
      socket.once("close", (code, reason) => request.log.info({ vm: hostname, code, reason: reason.toString() }, "Shell session ended"));
      relayShell(socket, duplex);
    },
  });
}
