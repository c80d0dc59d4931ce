// Port forwarding into a VM (GET /vm/HOST/forward): one WebSocket per connection, raw bytes both ways.
//   const conn = await client.forward("sbox-1", "127.0.0.1:80");   // a Duplex
//   const local = await client.listenForward("sbox-1", "8080:80");  // accepts on 127.0.0.1:8080
//
// The WebSocket has no half-close: ending the Duplex's writable side sends nothing; the connection is
// over when the guest's side closes (the Duplex ends) or when it is destroyed (the WebSocket is closed).
import { createServer, type Server, type Socket } from "node:net";
import { rm } from "node:fs/promises";
import { Duplex } from "node:stream";
import type WebSocket from "ws";
import { formatForwardTarget, parseForwardTarget, type ForwardTarget } from "../protocol/forward.ts";
import { CLOSE_CODE } from "../protocol/shell.ts";
import { formatListenAddress, parseForwardSpec, type ForwardMapping } from "./forward-spec.ts";
import type { ClientOptions } from "./transport.ts";
import { openWebSocket } from "./websocket.ts";

/** The WebSocket closed other than normally: code 1014 with the reason when the guest refused. */
export class ForwardClosedError extends Error {
  constructor(
    readonly closeCode: number,
    readonly reason: string,
  ) {
    super(reason || `The forwarded connection closed with code ${closeCode}`);
    this.name = "ForwardClosedError";
  }
}

/** Unsent bytes beyond which writes wait for the WebSocket to catch up. */
const SEND_HIGH = 1024 * 1024;
/** Unread bytes beyond which the WebSocket stops reading. */
const READ_HIGH = 1024 * 1024;

class WebSocketDuplex extends Duplex {
  private waitingToSend: (() => void) | undefined;

  constructor(private readonly ws: WebSocket) {
    super({ allowHalfOpen: true, readableHighWaterMark: READ_HIGH });
    ws.on("message", (data: Buffer | ArrayBuffer | Buffer[]) => {
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer);
      if (!this.push(bytes)) ws.pause();
    });
    ws.once("close", (code: number, reason: Buffer) => {
      this.waitingToSend?.();
      if (code === CLOSE_CODE.normal || code === 1005) {
        this.push(null);
        // Nothing more can be sent: once the reader has everything, this connection is done.
        this.once("end", () => this.destroy());
      } else {
        this.destroy(new ForwardClosedError(code, reason.toString("utf8")));
      }
    });
    ws.on("error", () => undefined); // "close" follows with the details
  }

  override _read(): void {
    if (this.ws.isPaused) this.ws.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.ws.readyState !== this.ws.OPEN) return callback(new Error("The forwarded connection is closed"));
    let called = false;
    const done = (err?: Error | null): void => {
      if (called) return;
      called = true;
      this.waitingToSend = undefined;
      callback(err);
    };
    this.ws.send(chunk, { binary: true }, (err) => {
      if (err || this.ws.bufferedAmount < SEND_HIGH) done(err);
    });
    if (this.ws.bufferedAmount < SEND_HIGH) done();
    else this.waitingToSend = () => done();
  }

  override _final(callback: (error?: Error | null) => void): void {
    callback(); // no half-close on a WebSocket (see above)
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.close(CLOSE_CODE.normal, "closing");
    else if (this.ws.readyState === this.ws.CONNECTING) this.ws.terminate();
    callback(error);
  }
}

export function forwardPath(hostname: string): string {
  return `/vm/${encodeURIComponent(hostname)}/forward`;
}

/** One forwarded connection to `target` (HOST:PORT or unix:/path inside the VM), as a Duplex stream. */
export async function openForward(client: ClientOptions, hostname: string, target: string | ForwardTarget, signal?: AbortSignal): Promise<Duplex> {
  const parsed = typeof target === "string" ? parseForwardTarget(target) : target;
  const ws = await openWebSocket(
    client,
    forwardPath(hostname),
    { "x-inlets-upstream": formatForwardTarget(parsed), "x-inlets-mode": "local", "x-inlets-client-id": "corral-sdk" },
    signal,
  );
  return new WebSocketDuplex(ws);
}

export interface LocalForward {
  mapping: ForwardMapping;
  /** Where it listens (the real port when the spec asked for port 0). */
  address: string;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

export interface ListenForwardOptions {
  /** Called when a connection could not be forwarded (refused in the guest, VM gone, ...). */
  onError?: (err: Error, mapping: ForwardMapping) => void;
  /** Called for each accepted connection. */
  onConnection?: (mapping: ForwardMapping) => void;
}

function relay(local: Socket, remote: Duplex, onError: (err: Error) => void): void {
  local.pipe(remote);
  remote.pipe(local);
  local.on("error", () => remote.destroy());
  local.on("close", () => remote.destroy());
  remote.on("error", (err) => {
    onError(err);
    local.destroy();
  });
  remote.on("close", () => {
    if (!local.writableEnded) local.end();
  });
}

/** Listens on this host as `spec` (or a parsed mapping) says, forwarding each connection into the VM. */
export async function listenForward(client: ClientOptions, hostname: string, spec: string | ForwardMapping, options: ListenForwardOptions = {}): Promise<LocalForward> {
  const mapping = typeof spec === "string" ? parseForwardSpec(spec) : spec;
  const sockets = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true, noDelay: true }, (local) => {
    sockets.add(local);
    local.once("close", () => sockets.delete(local));
    local.on("error", () => undefined);
    options.onConnection?.(mapping);
    local.pause();
    openForward(client, hostname, mapping.target).then(
      (remote) => {
        if (local.destroyed) return remote.destroy();
        local.resume();
        relay(local, remote, (err) => options.onError?.(err, mapping));
      },
      (err: Error) => {
        options.onError?.(err, mapping);
        local.destroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    if (mapping.listen.kind === "unix") server.listen(mapping.listen.path, () => resolve());
    else server.listen(mapping.listen.port, mapping.listen.host, () => resolve());
  });
  const bound = server.address();
  const address =
    typeof bound === "object" && bound && mapping.listen.kind === "tcp"
      ? formatListenAddress({ kind: "tcp", host: mapping.listen.host, port: bound.port })
      : formatListenAddress(mapping.listen);
  return {
    mapping,
    address,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
      if (mapping.listen.kind === "unix") await rm(mapping.listen.path, { force: true });
    },
  };
}
