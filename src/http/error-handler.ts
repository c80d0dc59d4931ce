// One error handler for every route: CorralError becomes its status and {"error","code"}; fastify's own
// errors (validation, bodies, media types) become 4xx with a message that names the field; anything else is
// logged with its cause and answered as "internal", never echoed. (What no route matched is answered by
// access control, src/http/access.ts: whether it is a 404 depends on who asks.)
import type { FastifyError, FastifyInstance, FastifyRequest } from "fastify";
import { CorralError, type ErrorBody } from "../protocol/errors.ts";
import { storageFullReason } from "../util/storage-full.ts";
import { errorBodyIn, wireOf, type UnmatchedWire } from "./wire.ts";

interface AjvError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
  parentSchema?: { description?: string };
}

const WHERE: Record<string, string> = { body: "body field", querystring: "query parameter", params: "path parameter", headers: "header" };

/** "Invalid body field \"cpus\": must be integer" and the like, from the first validation error. */
export function describeValidation(validation: readonly AjvError[], context: string | undefined): string {
  const first = validation[0];
  if (!first) return "The request is invalid";
  const where = WHERE[context ?? ""] ?? "field";
  const path = first.instancePath
    .replace(/^\//, "")
    .split("/")
    .map((part, i) => (/^\d+$/.test(part) ? `[${part}]` : i === 0 ? part : `.${part}`))
    .join("");
  if (first.keyword === "required") {
    const name = [path, String(first.params.missingProperty)].filter(Boolean).join(".");
    return `Missing ${where} ${JSON.stringify(name)}`;
  }
  if (first.keyword === "additionalProperties") {
    const name = [path, String(first.params.additionalProperty)].filter(Boolean).join(".");
    return `Unknown ${where} ${JSON.stringify(name)}`;
  }
  const subject = path ? `Invalid ${where} ${JSON.stringify(path)}` : context === "body" ? "Invalid request body" : `Invalid ${where}`;
  const description = first.parentSchema?.description;
  if (first.keyword === "pattern") return `${subject}: it must be ${description ?? `like ${String(first.params.pattern)}`}`;
  if (first.keyword === "enum") {
    const allowed = (first.params.allowedValues as unknown[] | undefined) ?? [];
    return `${subject}: it must be one of ${allowed.map((v) => JSON.stringify(v)).join(", ")}`;
  }
  if (first.keyword === "type") return `${subject}: it must be ${articled(String(first.params.type))}`;
  if (first.keyword === "minLength" && first.params.limit === 1) return `${subject}: it must not be empty`;
  return `${subject}: it ${first.message ?? "is not allowed"}`;
}

function articled(type: string): string {
  const names: Record<string, string> = { integer: "an integer", number: "a number", string: "a string", boolean: "true or false", array: "a list", object: "a JSON object" };
  return type
    .split(",")
    .map((t) => names[t] ?? t)
    .join(" or ");
}

function toErrorBody(error: FastifyError): { status: number; body: ErrorBody; retryAfter?: number } | undefined {
  if (error instanceof CorralError) return { status: error.status, body: error.toBody(), retryAfter: error.retryAfterSeconds };
  if (error.validation) {
    const code = error.validationContext === "params" ? "invalid_name" : "invalid_request";
    return { status: 400, body: { error: describeValidation(error.validation as AjvError[], error.validationContext), code } };
  }
  switch (error.code) {
    case "FST_ERR_CTP_BODY_TOO_LARGE":
      return { status: 413, body: { error: "The request body is too large", code: "payload_too_large" } };
    case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
      return { status: 415, body: { error: error.message, code: "unsupported_media_type" } };
    case "FST_ERR_CTP_INVALID_CONTENT_LENGTH":
      return { status: 400, body: { error: "The Content-Length header does not match the body", code: "invalid_request" } };
    default:
      break;
  }
  if (typeof error.statusCode === "number" && error.statusCode >= 400 && error.statusCode < 500) {
    return { status: error.statusCode, body: { error: error.message, code: "invalid_request" } };
  }
  // A write that the services did not name (they turn their own into a 507 that says what and where): the
  // host's disk is full, which is a condition of the host, not a bug.
  const full = storageFullReason(error);
  if (full)
    return { status: 507, body: { error: `Cannot complete the request: the server's storage is full (${full}); free space on the host and retry`, code: "insufficient_storage" } };
  return undefined;
}

export interface ErrorHandlingOptions {
  /**
   * An answer that replaces whatever error a request ended with: its body ran out of time, and the
   * reader's own failure (a broken upload, a closed agent stream) is only the consequence.
   */
  replaces?: (request: FastifyRequest) => CorralError | undefined;
  /** The wire of paths no route matched (src/http/wire.ts); a route's own is in its config. */
  unmatchedWire?: UnmatchedWire;
}

export function installErrorHandling(app: FastifyInstance, options: ErrorHandlingOptions = {}): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    const known = toErrorBody(options.replaces?.(request) ?? error);
    const wire = wireOf(request, options.unmatchedWire);
    // After a request that ran out of time the connection is not reused: the rest of its body may follow.
    if (known?.body.code === "request_timeout") reply.header("connection", "close");
    // A body refused before it was read (too large, unsupported type): fastify asks for the connection to
    // close, but closing while the client still sends resets the connection, and the client sees EPIPE
    // instead of the answer. Node reads the rest away (timed by the body deadlines) and the connection is
    // reused.
    else if (!request.raw.complete) reply.removeHeader("connection");
    if (known) {
      // A full disk is the host's condition, reported once per request without a stack; 5xx otherwise are bugs or broken parts.
      if (known.status === 507) request.log.warn({ url: request.url, err: error.message }, "request refused: storage full");
      else if (known.status >= 500) request.log.error({ err: error }, "request failed");
      if (known.retryAfter !== undefined) reply.header("retry-after", String(known.retryAfter));
      return reply.code(known.status).type("application/json").send(errorBodyIn(wire, known.body));
    }
    request.log.error({ err: error, url: request.url, method: request.method }, "unexpected error");
    return reply
      .code(500)
      .type("application/json")
      .send(errorBodyIn(wire, { error: "Internal error: see the daemon log", code: "internal" }));
  });
}
