// Error answers as Go's http.Error writes them, for a scope of routes that speaks a Go server's wire
// (Virtumancer's /api/v1): the message and a newline, `text/plain; charset=utf-8`, `X-Content-Type-Options:
// nosniff`. The status is the one the shared error handler chose (error-handler.ts: the catalogue's, never
// Go's catch-all 500 for bad input) and the catalogue's code rides in a header. An onSend hook of the scope
// rewrites the handler's JSON body, so validation, body, deadline and service errors all read alike. A 401
// stays JSON: access control answers it before any route, the same on every route of the server.
import type { FastifyInstance } from "fastify";

/** The catalogue's code of an error answered as text (src/protocol/errors.ts). */
export const ERROR_CODE_HEADER = "x-corral-error-code";

const JSON_TYPE = /^application\/json\b/;

/** `{error, code}` as the text Go would write: one line and a newline. */
export function goErrorText(message: string): string {
  return `${message.replace(/\s*[\r\n]+\s*/g, " ")}\n`;
}

export function installTextErrors(scope: FastifyInstance): void {
  scope.addHook("onSend", async (_request, reply, payload) => {
    if (reply.statusCode < 400 || reply.statusCode === 401 || typeof payload !== "string") return payload;
    if (!JSON_TYPE.test(String(reply.getHeader("content-type") ?? ""))) return payload;
    let body: { error?: unknown; code?: unknown };
    try {
      body = JSON.parse(payload) as typeof body;
    } catch {
      return payload;
    }
    if (typeof body.error !== "string" || typeof body.code !== "string") return payload;
    reply.header("content-type", "text/plain; charset=utf-8").header("x-content-type-options", "nosniff").header(ERROR_CODE_HEADER, body.code);
    return goErrorText(body.error);
  });
}
