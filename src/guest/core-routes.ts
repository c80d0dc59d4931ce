// The agent's core routes: health, identity (hostname, keys, userdata) and exec.
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { constants as h2 } from "node:http2";
import { AGENT_PATHS, AGENT_VERSION, EXEC_SPEC_HEADER, type AgentHealth, type ExecFrame, type ExecSpec, type GuestIdentity } from "../protocol/agent.ts";
import { runExec } from "./exec.ts";
import { withImageDefaults } from "./image-defaults.ts";
import { AgentRouteError, jsonHeader, readJson, sendJson } from "./http.ts";
import type { IdentityState } from "./identity.ts";
import type { AgentRouter } from "./router.ts";

function systemUptime(): number {
  try {
    return Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
  } catch {
    return 0;
  }
}

export function parseExecSpec(value: string | string[] | undefined): ExecSpec {
  const spec = jsonHeader<ExecSpec>(value, EXEC_SPEC_HEADER);
  if (typeof spec?.cmd !== "string" || !Array.isArray(spec.args) || !Array.isArray(spec.env)) {
    throw new AgentRouteError(400, "invalid_request", `Header ${EXEC_SPEC_HEADER} is not an exec spec`);
  }
  return spec;
}

export function registerCoreRoutes(router: AgentRouter, identity: IdentityState): void {
  const startedAt = performance.now();
  const health = (): AgentHealth => ({
    hostname: hostname(),
    agent_uptime: Math.round(performance.now() - startedAt) / 1000,
    agent_version: AGENT_VERSION,
    system_uptime: systemUptime(),
    userdata_ran: identity.applied && identity.userdataRan,
    userdata_exit_code: identity.userdataExitCode,
    identity_applied: identity.applied,
  });

  router.add("GET", AGENT_PATHS.health, ({ stream }) => sendJson(stream, 200, health()));

  router.add("POST", AGENT_PATHS.identity, async ({ stream }) => {
    const body = await readJson<GuestIdentity>(stream);
    if (typeof body?.hostname !== "string" || body.hostname.length === 0) throw new AgentRouteError(400, "invalid_request", "identity needs a hostname");
    await identity.apply(body);
    sendJson(stream, 200, health());
  });

  router.add("POST", AGENT_PATHS.exec, async ({ stream, headers }) => {
    // The image's ENV, WORKDIR and USER apply where the request is silent (see image-defaults.ts).
    const spec = withImageDefaults(parseExecSpec(headers[EXEC_SPEC_HEADER]));
    stream.respond({ [h2.HTTP2_HEADER_STATUS]: 200, [h2.HTTP2_HEADER_CONTENT_TYPE]: "application/x-ndjson" });
    const aborted = new AbortController();
    stream.on("close", () => aborted.abort());
    // A reset (the host gave up) also ends the readable side, as if stdin were complete: it must not reach the
    // command as a clean end of input (`cat > file` would finish a cut-off file), so it ends in an error.
    stream.once("aborted", () => stream.destroy(new Error("The request was cut off before its end")));
    const sink = {
      write: (frame: ExecFrame) => (stream.destroyed ? true : stream.write(`${JSON.stringify(frame)}\n`)),
      once: (event: "drain", listener: () => void) => stream.once(event, listener),
    };
    await runExec(spec, stream, sink, aborted.signal);
    if (!stream.destroyed) stream.end();
  });
}
