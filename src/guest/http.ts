// Small helpers for the agent's HTTP/2 handlers: JSON in and out, errors in the one shape.
import { constants as h2, type ServerHttp2Stream } from "node:http2";

const MAX_JSON_BODY = 8 * 1024 * 1024;

/** An error a handler throws to answer with a status and {"error","code"}. */
export class AgentRouteError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "AgentRouteError";
  }
}

export function sendJson(stream: ServerHttp2Stream, status: number, body: unknown): void {
  if (stream.destroyed || stream.closed) return;
  if (!stream.headersSent) stream.respond({ [h2.HTTP2_HEADER_STATUS]: status, [h2.HTTP2_HEADER_CONTENT_TYPE]: "application/json" });
  stream.end(JSON.stringify(body));
}

export function sendError(stream: ServerHttp2Stream, status: number, code: string, error: string): void {
  sendJson(stream, status, { error, code });
}

/** Reads a JSON request body (at most 8 MiB); a broken body is a 400. */
export function readJson<T>(stream: ServerHttp2Stream): Promise<T> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_JSON_BODY) {
        reject(new AgentRouteError(413, "payload_too_large", "The request body is too large"));
        stream.destroy();
        return;
      }
      chunks.push(chunk);
    });
    stream.on("end", () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8") || "null") as T);
      } catch (err) {
        reject(new AgentRouteError(400, "invalid_json", `The request body is not valid JSON: ${(err as Error).message}`));
      }
    });
    stream.on("error", reject);
  });
}

/** Reads a JSON-encoded header (how the host passes parameters next to a streamed body). */
export function jsonHeader<T>(value: string | string[] | undefined, name: string): T {
  if (typeof value !== "string") throw new AgentRouteError(400, "invalid_request", `Missing header ${name}`);
  try {
    return JSON.parse(value) as T;
  } catch {
    throw new AgentRouteError(400, "invalid_request", `Header ${name} is not valid JSON`);
  }
}
