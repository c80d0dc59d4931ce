// The web dashboard (open without the key: its files hold no secrets; the API it calls needs the key).
// GET / and any page the browser asks for by a client-side route (/hosts/h1, /envs/e1) -> index.html; a path
// that names a built file -> that file; anything else, and every path under the API's prefixes, -> 404 JSON.
// What may be served, and how, is decided in static-files.ts.
// Before `npm run build:web` has made web/dist, pages are a short note that says so.
import { createReadStream } from "node:fs";
import type { FastifyReply, FastifyRequest } from "fastify";
import type { ControllerApp, ControllerContext } from "../context.ts";
import { StaticRoot, type StaticFile } from "../static-files.ts";

/** Paths the dashboard never answers, so that a wrong API path is a JSON 404, not the dashboard's page. */
function isApiPath(path: string): boolean {
  return path === "/api" || path.startsWith("/api/") || path === "/ws" || path.startsWith("/ws/") || path === "/openapi.json" || path === "/healthz";
}

function wantsPage(request: FastifyRequest): boolean {
  return String(request.headers.accept ?? "").includes("text/html");
}

function notFound(reply: FastifyReply): FastifyReply {
  reply.callNotFound();
  return reply;
}

function sendFile(reply: FastifyReply, file: StaticFile): FastifyReply {
  return reply
    .type(file.contentType)
    .header("content-length", file.size)
    .header("cache-control", file.cacheControl)
    .header("x-content-type-options", "nosniff")
    .send(createReadStream(file.path));
}

function notBuiltPage(version: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Corral controller</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>Corral fleet controller ${version}</h1>
<p>The dashboard is not built: run <code>npm run build:web</code> (or <code>./corral up</code>, which builds it) and reload.</p>
<p>The API: <a href="/openapi.json">/openapi.json</a>, hosts at <code>/api/hosts</code>, environments at <code>/api/envs</code>,
fleet totals at <code>/api/status</code>, live events at <code>/ws</code>.</p>
</body></html>
`;
}

export function dashboardRoutes(app: ControllerApp, ctx: ControllerContext): void {
  const root = new StaticRoot(ctx.webRoot);

  const sendIndex = async (reply: FastifyReply): Promise<FastifyReply> => {
    const index = await root.index();
    if (index) return sendFile(reply, index);
    return reply.type("text/html; charset=utf-8").header("cache-control", "no-cache").send(notBuiltPage(ctx.version));
  };

  const serve = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const path = request.url.split("?")[0] ?? "/";
    if (path === "/") return sendIndex(reply);
    if (isApiPath(path)) return notFound(reply);
    const file = await root.find(path);
    if (file) return sendFile(reply, file);
    // A missing hashed asset stays a 404: the page that asked for it is stale, index.html would not help.
    if (wantsPage(request) && !path.startsWith("/assets/")) return sendIndex(reply);
    return notFound(reply);
  };

  const options = { schema: { hide: true }, config: { access: "public" as const } };
  app.get("/", options, serve);
  app.get("/*", options, serve);
}
