// GET /: the web dashboard (TTstack's, open without the key). Until the React app of web/ is built and
// served, a page that says what this server is and where its API is.
import type { ControllerApp, ControllerContext } from "../context.ts";

export function dashboardRoutes(app: ControllerApp, ctx: ControllerContext): void {
  app.get("/", { schema: { hide: true } }, async (_request, reply) =>
    reply.type("text/html; charset=utf-8").send(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Corral controller</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>Corral fleet controller ${ctx.version}</h1>
<p>The API: <a href="/openapi.json">/openapi.json</a>, hosts at <code>/api/hosts</code>, environments at <code>/api/envs</code>,
fleet totals at <code>/api/status</code>, live events at <code>/ws</code>. From a shell: <code>corral status</code>, <code>corral env list</code>.</p>
</body></html>
`),
  );
}
