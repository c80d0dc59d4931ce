// POST /vm/HOST/exec: runs a command in the guest. Streams NDJSON frames (started, stdout, stderr, exit)
// by default, or answers one JSON object with buffered=true. With stdin=true the request body is the
// command's stdin, read while output is already flowing back.
import type { ExecSpec } from "../../protocol/agent.ts";
import { CorralError } from "../../protocol/errors.ts";
import { BackgroundExecQuerySchema } from "../../protocol/jobs-api.ts";
import { VmParams, type ExecQuery } from "../../protocol/slicer.ts";
import { collectExec } from "../exec/collect-exec.ts";
import { relayExecFrames } from "../exec/exec-relay.ts";
import { installStreamingBodies } from "../../http/body-parsers.ts";
import { bodyStream } from "../../http/deadlines.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import { launchBackgroundExec } from "./exec-background.ts";

function asList(value: string | string[] | undefined): string[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

export function execSpecFromQuery(query: ExecQuery): ExecSpec {
  if (!query.cmd) throw new CorralError("invalid_request", 'Missing query parameter "cmd": name the command to run');
  const env = asList(query.env);
  for (const entry of env) {
    if (!/^[^=]+=/.test(entry)) throw new CorralError("invalid_request", `Invalid query parameter "env" ${JSON.stringify(entry)}: use KEY=VALUE`);
  }
  if (query.buffered && query.stdin) {
    throw new CorralError("invalid_request", "stdin=true cannot be combined with buffered=true: use the streaming form to send input");
  }
  const spec: ExecSpec = { cmd: query.cmd, args: asList(query.args), env, stdin: query.stdin ?? false, stdio: query.stdio ?? "text" };
  if (query.cwd) spec.cwd = query.cwd;
  if (query.uid !== undefined) spec.uid = query.uid;
  if (query.gid !== undefined) spec.gid = query.gid;
  if (query.user) spec.user = query.user;
  if (query.shell) spec.shell = query.shell;
  return spec;
}

export function execRoutes(app: DaemonApp, ctx: DaemonContext): void {
  // Its own encapsulated context: the body is stdin, streamed, not parsed, and not timed once the command runs.
  app.register(async (scope) => {
    installStreamingBodies(scope, "session");
    const typed = scope as DaemonApp;
    typed.post("/vm/:hostname/exec", { schema: { params: VmParams, querystring: BackgroundExecQuerySchema } }, async (request, reply) => {
      const spec = execSpecFromQuery(request.query);
      const body = bodyStream(request);
      if (request.query.background) return launchBackgroundExec(ctx, request, body, reply, spec);
      const cancel = new AbortController();
      reply.raw.on("close", () => {
        if (!reply.raw.writableFinished) cancel.abort();
      });
      const answer = await ctx.manager.exec(request.params.hostname, spec, spec.stdin ? body : undefined, cancel.signal);
      if (request.query.buffered) return collectExec(answer.stream, spec.stdio);
      if (!spec.stdin) body.resume(); // nothing to read: let the request end
      reply.header("content-type", "application/x-ndjson").header("cache-control", "no-store");
      return reply.send(relayExecFrames(answer.stream, answer.cancel));
    });
  });
}
