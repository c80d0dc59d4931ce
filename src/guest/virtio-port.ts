// The agent's virtio-serial port as a series of host connections, each a Duplex stream.
//
// The character device outlives host connections. When the host side is not connected, read(2) returns 0
// at once; while it is connected, read(2) blocks until data arrives. libuv cannot poll a character device,
// so blocking reads run on threads (the native relay's, or libuv's thread pool: see port-io.ts): one blocked
// read per agent costs no CPU. The kernel offers no event for "host connected", so only while nobody is
// connected is the read retried, with a backoff (after a daemon restart, or right after a snapshot restore).
//
// A write issued while no host is connected blocks in the kernel and reaches the *next* host first. So each
// connection starts with a handshake (see HANDSHAKE_HELLO): the host discards everything before the agent's
// READY line, and all writes go through one FIFO so nothing from an old connection can overtake the READY.
import { openSync, readdirSync, readFileSync } from "node:fs";
import { Duplex } from "node:stream";
import { AGENT_VERSION, HANDSHAKE_HELLO, HANDSHAKE_NONCE_PATTERN, HANDSHAKE_READY } from "../protocol/agent.ts";
import type { GuestNative, PortRelay } from "./native.ts";
import { type PortIo, RelayIo, ThreadPoolIo } from "./port-io.ts";

const MAX_HANDSHAKE_LINE = 4096;

/** Finds /dev/vportNpM whose name (set by QEMU's `virtserialport,name=`) matches. */
export function findPortDevice(name: string, sysDir = "/sys/class/virtio-ports"): string | undefined {
  let entries: string[];
  try {
    entries = readdirSync(sysDir);
  } catch {
    return undefined;
  }
  for (const entry of entries) {
    try {
      if (readFileSync(`${sysDir}/${entry}/name`, "utf8").trim() === name) return `/dev/${entry}`;
    } catch {
      // a port without a name: not ours
    }
  }
  return undefined;
}

/** Returns the nonce when `line` is a valid HELLO line (without its newline). */
export function parseHello(line: string): string | undefined {
  const [word, nonce, ...rest] = line.trim().split(" ");
  if (word !== HANDSHAKE_HELLO || rest.length > 0 || nonce === undefined) return undefined;
  return HANDSHAKE_NONCE_PATTERN.test(nonce) ? nonce : undefined;
}

interface WriteJob {
  owner: HostConnection;
  data: Buffer[];
  done: (err?: Error | null) => void;
}

/** Serialises every write to the device, in order, across connections. */
class PortWriter {
  private readonly queue: WriteJob[] = [];
  private busy = false;

  constructor(private readonly io: PortIo) {}

  enqueue(job: WriteJob): void {
    this.queue.push(job);
    if (!this.busy) this.next();
  }

  private next(): void {
    const job = this.queue.shift();
    if (!job) {
      this.busy = false;
      return;
    }
    this.busy = true;
    // Writes for a connection whose host is gone would only block until the next host, as garbage.
    if (job.owner.hostGone) {
      job.done();
      this.next();
      return;
    }
    this.io.write(job.data, (err) => {
      job.done(err);
      this.next();
    });
  }
}

class HostConnection extends Duplex {
  /** Set by the port when the reader waits for this consumer before reading more. */
  onDemand: (() => void) | undefined;
  /** Set when the host disconnected. */
  hostGone = false;

  constructor(private readonly writer: PortWriter) {
    super({ allowHalfOpen: false });
  }

  override _read(): void {
    const resume = this.onDemand;
    this.onDemand = undefined;
    resume?.();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.writer.enqueue({ owner: this, data: [chunk], done: callback });
  }

  // HTTP/2 writes a frame's header and its payload as separate chunks: one write for all that is queued.
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (err?: Error | null) => void): void {
    this.writer.enqueue({ owner: this, data: chunks.map((c) => c.chunk), done: callback });
  }
}

type PortState = "awaiting-hello" | "connected" | "discarding";

export class VirtioPort {
  private readonly io: PortIo;
  private readonly writer: PortWriter;
  private current: HostConnection | undefined;
  private state: PortState = "awaiting-hello";
  private handshakeBuffer = "";
  /** Why the native relay could not start, when it could not. */
  readonly relayFailure: Error | undefined;

  /** `native`: the agent's addon, whose relay moves the bytes when it has one (see port-io.ts). */
  constructor(
    readonly device: string,
    private readonly onConnection: (connection: Duplex) => void,
    native?: GuestNative,
  ) {
    const fd = openSync(device, "r+");
    const onRead = (data: Buffer | undefined, err?: Error): void => {
      if (data) return this.received(data);
      // No host is connected; an error (ENODEV: port unplugged) is treated the same way.
      this.hostDisconnected(err);
      this.readNext();
    };
    let relay: PortRelay | undefined;
    try {
      relay = native?.startPortRelay?.(fd);
    } catch (err) {
      this.relayFailure = err as Error; // out of threads or descriptors: the slow way still serves the host
    }
    this.io = relay ? new RelayIo(relay, onRead) : new ThreadPoolIo(fd, onRead);
    this.writer = new PortWriter(this.io);
    this.readNext();
  }

  /** Which way the bytes move: "relay" (the native relay's threads) or "thread-pool". */
  get transport(): "relay" | "thread-pool" {
    return this.io instanceof RelayIo ? "relay" : "thread-pool";
  }

  private readNext(): void {
    this.io.read();
  }

  private received(data: Buffer): void {
    // A host that reconnected faster than our read noticed the disconnect starts with HELLO mid-connection.
    if (this.state !== "awaiting-hello" && data.subarray(0, HANDSHAKE_HELLO.length + 1).toString("latin1") === `${HANDSHAKE_HELLO} `) {
      const end = data.indexOf(0x0a);
      if (end > 0 && parseHello(data.subarray(0, end).toString("latin1"))) this.hostDisconnected();
    }
    switch (this.state) {
      case "discarding":
        return this.readNext();
      case "awaiting-hello":
        return this.handshake(data);
      case "connected":
        return this.forward(data);
    }
  }

  private handshake(data: Buffer): void {
    this.handshakeBuffer += data.toString("latin1");
    for (;;) {
      const end = this.handshakeBuffer.indexOf("\n");
      if (end < 0) break;
      const line = this.handshakeBuffer.slice(0, end);
      this.handshakeBuffer = this.handshakeBuffer.slice(end + 1);
      const nonce = parseHello(line);
      if (nonce === undefined) continue; // leftovers of an older host connection
      const rest = Buffer.from(this.handshakeBuffer, "latin1");
      this.handshakeBuffer = "";
      this.startConnection(nonce);
      if (rest.length > 0) return this.forward(rest);
      return this.readNext();
    }
    if (this.handshakeBuffer.length > MAX_HANDSHAKE_LINE) this.handshakeBuffer = "";
    this.readNext();
  }

  private startConnection(nonce: string): void {
    const connection = new HostConnection(this.writer);
    this.current = connection;
    this.state = "connected";
    // A connection the agent closes while the host is still connected leaves the host mid-stream: drop
    // whatever else it sends until it disconnects or says HELLO again.
    connection.on("close", () => {
      if (this.current === connection) {
        this.current = undefined;
        this.state = "discarding";
      }
      connection._read(); // a reader waiting for this consumer must not wait forever
    });
    this.writer.enqueue({ owner: connection, data: [Buffer.from(`${HANDSHAKE_READY} ${nonce} ${AGENT_VERSION}\n`, "latin1")], done: () => undefined });
    this.onConnection(connection);
  }

  private forward(data: Buffer): void {
    const connection = this.current;
    if (!connection || connection.destroyed) return this.readNext();
    if (connection.push(data)) this.readNext();
    else connection.onDemand = () => this.readNext();
  }

  private hostDisconnected(err?: Error): void {
    this.state = "awaiting-hello";
    this.handshakeBuffer = "";
    const connection = this.current;
    this.current = undefined;
    if (!connection || connection.destroyed) return;
    connection.hostGone = true;
    if (err) connection.destroy(err);
    else connection.push(null);
  }
}
