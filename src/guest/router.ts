// Routes of the agent's HTTP/2 server: "METHOD /path/:param" patterns, each feature registering its own.
import { constants as h2, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { AgentRouteError, sendError } from "./http.ts";

export interface RouteContext {
  stream: ServerHttp2Stream;
  headers: IncomingHttpHeaders;
  params: Record<string, string>;
  query: URLSearchParams;
}

export type RouteHandler = (ctx: RouteContext) => void | Promise<void>;

interface Route {
  method: string;
  parts: string[];
  handler: RouteHandler;
}

function decodeParam(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new AgentRouteError(400, "invalid_request", `Malformed escape in path segment ${JSON.stringify(text)}`);
  }
}

export class AgentRouter {
  private readonly routes: Route[] = [];

  add(method: string, pattern: string, handler: RouteHandler): this {
    this.routes.push({ method, parts: pattern.split("/"), handler });
    return this;
  }

  /** Answers one stream; unknown routes get 404 and thrown errors their status (500 when unexpected). */
  async dispatch(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    stream.on("error", () => undefined);
    const method = String(headers[h2.HTTP2_HEADER_METHOD]);
    try {
      const url = new URL(String(headers[h2.HTTP2_HEADER_PATH]), "http://agent");
      const match = this.match(method, url.pathname);
      if (!match) return sendError(stream, 404, "not_found", `No agent route ${method} ${url.pathname}`);
      await match.route.handler({ stream, headers, params: match.params, query: url.searchParams });
    } catch (err) {
      if (err instanceof AgentRouteError) return sendError(stream, err.status, err.code, err.message);
      sendError(stream, 500, "internal", (err as Error).message);
    }
  }

  private match(method: string, path: string): { route: Route; params: Record<string, string> } | undefined {
    const parts = path.split("/");
    for (const route of this.routes) {
      if (route.method !== method || route.parts.length !== parts.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < parts.length && ok; i++) {
        const expected = route.parts[i] as string;
        const actual = parts[i] as string;
        if (expected.startsWith(":")) params[expected.slice(1)] = decodeParam(actual);
        else ok = expected === actual;
      }
      if (ok) return { route, params };
    }
    return undefined;
  }
}
