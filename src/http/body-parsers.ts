// Request bodies. JSON is parsed whatever the Content-Type says (curl -d sends form encoding; Slicer's Go
// server ignores the header too), an empty body is "no body", and a broken one is a 400 that says so.
// Routes that stream their body (exec with stdin, uploads) get it as a stream instead.
import type { FastifyInstance } from "fastify";
import { CorralError } from "../protocol/errors.ts";
import type { BodyMode } from "./deadlines.ts";

export const JSON_BODY_LIMIT = 1024 * 1024;

export function installJsonBodies(app: FastifyInstance): void {
  // No body at all (Slicer's Go SDK posts actions without one) is an empty object to the body schemas.
  app.addHook("preValidation", async (request) => {
    if (request.body === undefined || request.body === null) request.body = {};
  });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer", bodyLimit: JSON_BODY_LIMIT }, (_request, body: Buffer, done) => {
    if (body.length === 0 || body.toString("utf8").trim().length === 0) return done(null, undefined);
    try {
      done(null, JSON.parse(body.toString("utf8")));
    } catch (err) {
      done(new CorralError("invalid_json", `The request body is not valid JSON: ${(err as Error).message}`), undefined);
    }
  });
}

/**
 * For an encapsulated route set: the body is left unread, as a stream the handler takes with bodyStream()
 * (src/http/deadlines.ts), and timed by inactivity rather than in total; a `session` body (exec stdin) only
 * until the answer begins (see BodyMode).
 */
export function installStreamingBodies(app: FastifyInstance, mode: Exclude<BodyMode, "parsed"> = "stream"): void {
  app.addHook("onRoute", (route) => {
    route.config = { ...route.config, body: mode };
  });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", (_request, payload, done) => done(null, payload));
}
