// The agent's HTTP/2 routes. Every host connection gets its own HTTP/2 session over the same handler.
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { constants as h2, createServer, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import type { Duplex } from "node:stream";
import { AGENT_PATHS, AGENT_VERSION, EXEC_SPEC_HEADER, type AgentHealth, type ExecFrame, type ExecSpec, type GuestIdentity } from "../protocol/agent.ts";
import { runExec } from "./exec.ts";
import type { IdentityState } from "./identity.ts";

const MAX_JSON_BODY = 1024 * 1024;

function systemUptime(): number {
  try {
    return Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
  } catch {
    return 0;
  }
}

function sendJson(stream: ServerHttp2Stream, status: number, body: unknown): void {
  if (stream.destroyed || stream.closed) return;
  stream.respond({ [h2.HTTP2_HEADER_STATUS]: status, [h2.HTTP2_HEADER_CONTENT_TYPE]: "application/json" });
  stream.end(JSON.stringify(body));
}

function sendError(stream: ServerHttp2Stream, status: number, code: string, error: string): void {
  sendJson(stream, status, { error, code });
}

function readJson<T>(stream: ServerHttp2Stream): Promise<T> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_JSON_BODY) {
        reject(new Error("request body too large"));
        stream.destroy();
        return;
      }
      chunks.push(chunk);
    });
    stream.on("end", () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")) as T);
      } catch (err) {
        reject(err as Error);
      }
    });
    stream.on("error", reject);
  });
}

function parseExecSpec(headers: IncomingHttpHeaders): ExecSpec | undefined {
  const raw = headers[EXEC_SPEC_HEADER];
  if (typeof raw !== "string") return undefined;
  try {
    const spec = JSON.parse(raw) as ExecSpec;
    if (typeof spec.cmd !== "string" || !Array.isArray(spec.args) || !Array.isArray(spec.env)) return undefined;
    return spec;
  } catch {
    return undefined;
  }
}

export class AgentServer {
  private readonly server: Http2Server;
  private readonly startedAt = performance.now();

  constructor(private readonly identity: IdentityState) {
    this.server = createServer({ settings: { initialWindowSize: 4 * 1024 * 1024 } });
    this.server.on("stream", (stream, headers) => {
      this.route(stream, headers).catch((err: Error) => sendError(stream, 500, "internal", err.message));
    });
    this.server.on("session", (session) => {
      session.on("error", () => undefined); // the host went away mid-frame; the port starts a new session
      session.setLocalWindowSize(16 * 1024 * 1024);
    });
  }

  /** Serves one host connection until it closes. */
  serve(connection: Duplex): void {
    connection.on("error", () => undefined);
    this.server.emit("connection", connection);
  }

  health(): AgentHealth {
    return {
      hostname: hostname(),
      agent_uptime: Math.round(performance.now() - this.startedAt) / 1000,
      agent_version: AGENT_VERSION,
      system_uptime: systemUptime(),
      userdata_ran: this.identity.applied && this.identity.userdataRan,
      userdata_exit_code: this.identity.userdataExitCode,
      identity_applied: this.identity.applied,
    };
  }

  private async route(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    stream.on("error", () => undefined);
    const method = headers[h2.HTTP2_HEADER_METHOD];
    const path = headers[h2.HTTP2_HEADER_PATH];
    if (method === "GET" && path === AGENT_PATHS.health) return sendJson(stream, 200, this.health());
    if (method === "POST" && path === AGENT_PATHS.identity) {
      const identity = await readJson<GuestIdentity>(stream);
      if (typeof identity.hostname !== "string" || identity.hostname.length === 0) {
        return sendError(stream, 400, "invalid_request", "identity needs a hostname");
      }
      await this.identity.apply(identity);
      return sendJson(stream, 200, this.health());
    }
    if (method === "POST" && path === AGENT_PATHS.exec) return this.exec(stream, headers);
    sendError(stream, 404, "not_found", `No agent route ${String(method)} ${String(path)}`);
  }

  private async exec(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    const spec = parseExecSpec(headers);
    if (!spec) return sendError(stream, 400, "invalid_request", `exec needs a valid ${EXEC_SPEC_HEADER} header`);
    stream.respond({ [h2.HTTP2_HEADER_STATUS]: 200, [h2.HTTP2_HEADER_CONTENT_TYPE]: "application/x-ndjson" });
    const aborted = new AbortController();
    stream.on("close", () => aborted.abort());
    const sink = {
      write: (frame: ExecFrame) => (stream.destroyed ? true : stream.write(`${JSON.stringify(frame)}\n`)),
      once: (event: "drain", listener: () => void) => stream.once(event, listener),
    };
    await runExec(spec, stream, sink, aborted.signal);
    if (!stream.destroyed) stream.end();
  }
}
