// Opening a WebSocket to the daemon with the SDK's connection settings: the same URL or unix socket and
// the same token as the HTTP transport. Over a unix socket the request goes to ws://localhost/... (as
// Slicer's SDKs send it). A refusal (any status but 101) becomes a CorralApiError with the daemon's
// {"error","code"}.
import { connect } from "node:net";
import type WebSocket from "ws";
import { apiErrorFrom, type ClientOptions, socketPathOf } from "./transport.ts";

const HANDSHAKE_TIMEOUT_MS = 75_000;

export function webSocketUrl(url: string, path: string): string {
  if (socketPathOf(url) !== undefined) return `ws://localhost${path}`;
  const parsed = new URL(url);
  const scheme = parsed.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${parsed.host}${path}`;
}

/** Resolves once the WebSocket is open; rejects with CorralApiError when the daemon refuses it. */
export async function openWebSocket(options: ClientOptions, path: string, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<WebSocket> {
  // Loaded on first use: a command that opens no WebSocket does not pay for parsing ws.
  const { default: WebSocket } = await import("ws");
  const socketPath = socketPathOf(options.url);
  const allHeaders: Record<string, string> = { "user-agent": "corral-sdk", ...headers };
  if (options.token) allHeaders.authorization = `Bearer ${options.token}`;
  const ws = new WebSocket(webSocketUrl(options.url, path), {
    headers: allHeaders,
    perMessageDeflate: false,
    // The daemon answers the upgrade once the guest accepted the session; for a VM still booting it waits
    // up to a minute for the agent.
    handshakeTimeout: Math.max(options.timeoutMs ?? 30_000, HANDSHAKE_TIMEOUT_MS),
    ...(socketPath !== undefined ? { createConnection: () => connect(socketPath) } : {}),
  });
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      ws.on("error", () => undefined);
      ws.terminate();
      reject(signal?.reason instanceof Error ? signal.reason : new Error("The WebSocket was aborted"));
    };
    if (signal?.aborted) return onAbort();
    signal?.addEventListener("abort", onAbort, { once: true });
    const settle = (): void => signal?.removeEventListener("abort", onAbort);
    ws.once("open", () => {
      settle();
      ws.removeAllListeners("error");
      resolve(ws);
    });
    ws.once("unexpected-response", (_request, response) => {
      settle();
      let text = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (text += chunk));
      response.on("end", () => {
        ws.on("error", () => undefined); // terminating a handshake in progress reports it as an error
        ws.terminate();
        reject(apiErrorFrom(response.statusCode ?? 0, text, "GET", path));
      });
    });
    ws.once("error", (err) => {
      settle();
      reject(err);
    });
  });
}
