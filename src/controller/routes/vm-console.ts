// A VM's console through the controller, for the dashboard: GET /api/hosts/HOST/vms/NAME/shell, a WebSocket
// relayed to the daemon's GET /vm/NAME/shell (Slicer's binary frames, unchanged), and GET .../logs, the
// daemon's serial console log streamed through. Everything that can go wrong before the shell session
// starts is answered as HTTP before the upgrade: the controller opens the daemon's WebSocket first and
// upgrades the browser only once the daemon accepted, so an unknown VM is a 404, a paused one a 409, a host
// that does not answer a 502, a request that is not a WebSocket a 426.
import type { HttpResponse } from "../../sdk/transport.ts";
import type { WebSocket } from "ws";
import { HostVmParams } from "../../protocol/controller.ts";
import { CLOSE_CODE } from "../../protocol/shell.ts";
import { LogsQuerySchema, ShellQuerySchema } from "../../protocol/slicer.ts";
import { abortOnDisconnect, assertWebSocketUpgrade, PendingUpgrades } from "../../http/upgrade.ts";
import type { ControllerApp, ControllerContext } from "../context.ts";
import { hostFailure } from "../host-driver.ts";
import { linkToHost } from "../host-vm-calls.ts";
import { relayWebSockets } from "../ws-relay.ts";

const SHELL_ROUTE = "GET /api/hosts/HOST/vms/NAME/shell";

/** The shell route; registered in the scope that has the WebSocket plugin (see websockets.ts). */
export function vmShellRoute(scope: ControllerApp, ctx: ControllerContext): void {
  const pending = new PendingUpgrades<WebSocket>();

  scope.route({
    method: "GET",
    url: "/api/hosts/:hostId/vms/:vmName/shell",
    schema: { params: HostVmParams, querystring: ShellQuerySchema },
    // The dashboard's terminal: a browser's WebSocket cannot send the key as a header.
    config: { access: "token-or-query" },
    preHandler: async (request) => {
      const { hostId, vmName } = request.params;
      const driver = await linkToHost(ctx, hostId);
      assertWebSocketUpgrade(request, SHELL_ROUTE);
      const { uid, gid, shell, cwd } = request.query;
      let upstream: WebSocket;
      try {
        upstream = await driver.openShell(vmName, { uid, gid, shell, cwd }, abortOnDisconnect(request));
      } catch (err) {
        throw hostFailure(hostId, err);
      }
      // Nothing may be read from the daemon before the relay listens: the prompt would be lost.
      upstream.pause();
      if (request.raw.socket.destroyed) return void upstream.terminate();
      pending.hold(request, upstream, (ws) => ws.terminate());
    },
    // Only reached by a HEAD request: a plain GET was refused (426) before this.
    handler: async (_request, reply) => reply.code(426).send({ error: `${SHELL_ROUTE} is a WebSocket`, code: "upgrade_required" }),
    wsHandler: (socket: WebSocket, request) => {
      const upstream = pending.claim(request);
      if (!upstream) return socket.close(CLOSE_CODE.internalError, "The shell was lost before the session started");
      const { hostId, vmName } = request.params as { hostId: string; vmName: string };
      request.log.info({ host: hostId, vm: vmName }, "Shell session started");
      socket.once("close", (code, reason) => request.log.info({ host: hostId, vm: vmName, code, reason: reason.toString() }, "Shell session ended"));
      relayWebSockets(socket, upstream, { upstream: `host ${JSON.stringify(hostId)}` });
      upstream.resume();
    },
  });
}

export function vmLogsRoute(app: ControllerApp, ctx: ControllerContext): void {
  app.get("/api/hosts/:hostId/vms/:vmName/logs", { schema: { params: HostVmParams, querystring: LogsQuerySchema } }, async (request, reply) => {
    const { hostId, vmName } = request.params;
    const driver = await linkToHost(ctx, hostId);
    // Stops the daemon's answer when the client leaves; the streamed body is destroyed with the response.
    const abort = new AbortController();
    reply.raw.once("close", () => abort.abort());
    let answer: HttpResponse;
    try {
      answer = await driver.logs(vmName, { lines: request.query.lines }, abort.signal);
    } catch (err) {
      throw hostFailure(hostId, err);
    }
    const type = answer.headers["content-type"];
    if (typeof type === "string") reply.type(type);
    return reply.send(answer.body);
  });
}
