// A WebSocket client for tests that need to see the wire: every message as it came, the close code and
// reason, or the HTTP answer when the daemon refused the upgrade. Over TCP or the daemon's unix socket.
import { connect } from "node:net";
import WebSocket from "ws";

export interface RawTarget {
  /** http://host:port, or a unix socket path. */
  url: string;
  token?: string;
}

export interface Refusal {
  refused: true;
  status: number;
  body: { error: string; code: string };
}

export interface RawSession {
  refused: false;
  ws: WebSocket;
  /** Every message, in order (for the shell: one frame each). */
  messages: Buffer[];
  closed: Promise<{ code: number; reason: string }>;
}

export function openRaw(target: RawTarget, path: string, headers: Record<string, string> = {}): Promise<RawSession | Refusal> {
  const socketPath = target.url.startsWith("/") ? target.url : undefined;
  const url = socketPath ? `ws://localhost${path}` : `${target.url.replace(/^http/, "ws")}${path}`;
  const all = { ...headers, ...(target.token ? { authorization: `Bearer ${target.token}` } : {}) };
  const ws = new WebSocket(url, { headers: all, perMessageDeflate: false, ...(socketPath ? { createConnection: () => connect(socketPath) } : {}) });
  const messages: Buffer[] = [];
  ws.on("message", (data: Buffer) => messages.push(data));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve({ refused: false, ws, messages, closed }));
    ws.once("unexpected-response", (_request, response) => {
      let text = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => (text += chunk));
      response.on("end", () => {
        ws.on("error", () => undefined);
        ws.terminate();
        let body: { error: string; code: string };
        try {
          body = JSON.parse(text) as { error: string; code: string };
        } catch {
          body = { error: text, code: "not_json" };
        }
        resolve({ refused: true, status: response.statusCode ?? 0, body });
      });
    });
    ws.once("error", reject);
  });
}

/** Opens and insists the daemon answered 101. */
export async function openAccepted(target: RawTarget, path: string, headers: Record<string, string> = {}): Promise<RawSession> {
  const session = await openRaw(target, path, headers);
  if (session.refused) throw new Error(`Expected a WebSocket, got ${session.status} ${JSON.stringify(session.body)}`);
  return session;
}

/** Opens and insists the daemon refused; returns the status and error body. */
export async function openRefused(target: RawTarget, path: string, headers: Record<string, string> = {}): Promise<Refusal> {
  const session = await openRaw(target, path, headers);
  if (!session.refused) {
    session.ws.terminate();
    throw new Error("Expected the daemon to refuse the WebSocket, but it accepted it");
  }
  return session;
}
