// Can this program reach that address? A probe small enough to run with `node -e` anywhere (inside a guest,
// in a network namespace, under another group id), and listeners that say who reached them. The wall's
// tests use both sides: the probe's verdict, and whether the listener saw anything.
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, type Server } from "node:net";

/**
 * `node -e REACH_PROBE tcp|udp ADDRESS PORT` prints one JSON line: {"outcome": "open", "data": "..."} when
 * the other side answered (the first line of what it said), "connected" (TCP connected, nothing said), "refused", "timeout", "no-reply"
 * (UDP) or "error" with the error's code.
 */
export const REACH_PROBE = `
const [kind, host, port] = process.argv.slice(-3);
const done = (result) => { console.log(JSON.stringify(result)); process.exit(0); };
const firstLine = (data) => String(data).split("\\n")[0].trim().slice(0, 80);
if (kind === "tcp") {
  const net = require("net");
  const socket = net.connect({ host, port: Number(port) });
  let connected = false;
  socket.setTimeout(8000, () => done({ outcome: connected ? "connected" : "timeout" }));
  socket.on("connect", () => { connected = true; });
  socket.on("data", (data) => done({ outcome: "open", data: firstLine(data) }));
  socket.on("error", (err) => done({ outcome: err.code === "ECONNREFUSED" || err.code === "ECONNRESET" ? "refused" : "error", code: err.code }));
  socket.on("close", () => done({ outcome: connected ? "connected" : "refused" }));
} else {
  const dgram = require("dgram");
  const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  socket.on("message", (data) => done({ outcome: "open", data: firstLine(data) }));
  socket.on("error", (err) => done({ outcome: err.code === "ECONNREFUSED" ? "refused" : "error", code: err.code }));
  let sent = 0;
  const send = () => { if (sent++ < 4) socket.send("probe", Number(port), host, () => undefined); };
  send();
  setInterval(send, 1000).unref();
  setTimeout(() => done({ outcome: "no-reply" }), 6000);
}
`;

export interface ProbeResult {
  outcome: "open" | "connected" | "refused" | "timeout" | "no-reply" | "error";
  data?: string;
  code?: string;
}

export function parseProbe(stdout: string): ProbeResult {
  const line = stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as ProbeResult;
  } catch {
    return { outcome: "error", code: `unreadable probe output ${JSON.stringify(stdout.slice(-200))}` };
  }
}

export function reached(result: ProbeResult): boolean {
  return result.outcome === "open" || result.outcome === "connected";
}

/** A TCP listener that greets each connection with its name and counts them. */
export class TcpListener {
  connections = 0;
  private constructor(
    readonly server: Server,
    readonly port: number,
  ) {}

  static async open(name: string, host: string, port = 0): Promise<TcpListener> {
    let listener: TcpListener | undefined;
    const server = createServer((socket) => {
      if (listener) listener.connections++;
      socket.on("error", () => undefined);
      socket.end(`${name}\n`);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host, port, exclusive: true }, resolve);
    });
    listener = new TcpListener(server, (server.address() as { port: number }).port);
    return listener;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** A UDP listener that answers each datagram with its name and counts them. */
export class UdpListener {
  datagrams = 0;
  private constructor(
    readonly socket: UdpSocket,
    readonly port: number,
  ) {}

  static async open(name: string, host: string): Promise<UdpListener> {
    const socket = createSocket(host.includes(":") ? "udp6" : "udp4");
    let listener: UdpListener | undefined;
    socket.on("message", (_data, from) => {
      if (listener) listener.datagrams++;
      socket.send(`${name}\n`, from.port, from.address);
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(0, host, resolve);
    });
    listener = new UdpListener(socket, socket.address().port);
    return listener;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }
}
