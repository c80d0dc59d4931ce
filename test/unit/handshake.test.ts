import { test, describe, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { agentHandshake, HandshakeError, type Handshaken } from "../../src/daemon/agent/handshake.ts";

const dir = await mkdtemp(join(tmpdir(), "corral-handshake-test-"));
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let count = 0;

// Everything a test opened is closed after it, even when an assertion failed half-way.
const openFakes = new Set<FakeAgent>();
const openSockets = new Set<Socket>();
afterEach(async () => {
  for (const socket of openSockets) socket.destroy();
  openSockets.clear();
  for (const fake of openFakes) await fake.close();
  openFakes.clear();
});

/** agentHandshake, remembering the socket for clean-up. */
async function handshake(path: string, signal: AbortSignal): Promise<Handshaken> {
  const result = await agentHandshake(path, signal);
  openSockets.add(result.socket);
  return result;
}

interface AgentSide {
  socket: Socket;
  /** The nonce from the host's HELLO line. */
  nonce: string;
  /** Exactly what the host sent. */
  hello: string;
  closed: Promise<void>;
}

interface FakeAgent {
  path: string;
  agent: Promise<AgentSide>;
  close(): Promise<void>;
}

/** Accepts one host connection and resolves once its HELLO line arrived. */
async function fakeAgent(): Promise<FakeAgent> {
  const path = join(dir, `agent-${++count}.sock`);
  const sockets = new Set<Socket>();
  let resolveAgent!: (side: AgentSide) => void;
  const agent = new Promise<AgentSide>((resolve) => {
    resolveAgent = resolve;
  });
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    let text = "";
    const onData = (chunk: Buffer): void => {
      text += chunk.toString("latin1");
      const end = text.indexOf("\n");
      if (end < 0) return;
      socket.off("data", onData);
      const hello = text.slice(0, end + 1);
      const match = /^CORRAL-HELLO ([0-9a-f]+)\n$/.exec(hello);
      resolveAgent({ socket, nonce: match?.[1] ?? "", hello, closed });
    };
    socket.on("data", onData);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  let closing: Promise<void> | undefined;
  const fake: FakeAgent = {
    path,
    agent,
    close: () => {
      closing ??= (async () => {
        for (const s of sockets) s.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      })();
      return closing;
    },
  };
  openFakes.add(fake);
  return fake;
}

/** Reads exactly `n` bytes from a paused socket, in order. */
function readBytes(socket: Socket, n: number, timeoutMs = 1000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      socket.off("data", onData);
      reject(new Error(`only ${size} of ${n} bytes arrived: ${JSON.stringify(Buffer.concat(parts).toString("latin1"))}`));
    }, timeoutMs);
    const onData = (chunk: Buffer): void => {
      parts.push(chunk);
      size += chunk.length;
      if (size >= n) {
        clearTimeout(timer);
        socket.off("data", onData);
        socket.pause();
        const all = Buffer.concat(parts);
        if (all.length > n) socket.unshift(all.subarray(n));
        resolve(all.subarray(0, n));
      }
    };
    socket.on("data", onData);
    socket.resume();
  });
}

describe("agentHandshake", { timeout: 20_000 }, () => {
  test("sends one HELLO line with a fresh 32-hex-digit nonce", async () => {
    const fakes = [await fakeAgent(), await fakeAgent()];
    const nonces: string[] = [];
    for (const fake of fakes) {
      const done = handshake(fake.path, AbortSignal.timeout(2000));
      const agent = await fake.agent;
      assert.match(agent.hello, /^CORRAL-HELLO [0-9a-f]{32}\n$/);
      nonces.push(agent.nonce);
      agent.socket.write(`CORRAL-READY ${agent.nonce} 0.1.0\n`);
      const { socket } = await done;
      socket.destroy();
      await fake.close();
    }
    assert.notEqual(nonces[0], nonces[1]);
  });

  test("resolves with the agent version and a paused socket that still holds the bytes after READY", async () => {
    const fake = await fakeAgent();
    const done = handshake(fake.path, AbortSignal.timeout(2000));
    const agent = await fake.agent;
    // READY and the first bytes of the next protocol arrive in the same chunk; include non-UTF-8 bytes.
    const after = Buffer.from([0x50, 0x52, 0x49, 0x00, 0xff, 0xfe, 0x0a, 0x80]);
    agent.socket.write(Buffer.concat([Buffer.from(`CORRAL-READY ${agent.nonce} 9.8.7\n`, "latin1"), after]));
    const { socket, agentVersion } = await done;
    assert.equal(agentVersion, "9.8.7");
    assert.equal(socket.isPaused(), true);
    assert.equal(socket.listenerCount("data"), 0, "the handshake leaves no data listener behind");
    await sleep(20);
    agent.socket.write("later bytes");
    assert.deepEqual(await readBytes(socket, after.length), after);
    assert.equal((await readBytes(socket, 11)).toString("latin1"), "later bytes");
    // The socket still works in the other direction.
    const echoed = new Promise<string>((resolve) => agent.socket.once("data", (c: Buffer) => resolve(c.toString())));
    socket.write("from host");
    assert.equal(await echoed, "from host");
    socket.destroy();
    await fake.close();
  });

  test("skips stale bytes and a READY with a wrong nonce before the right one", async () => {
    const fake = await fakeAgent();
    const done = handshake(fake.path, AbortSignal.timeout(2000));
    const agent = await fake.agent;
    agent.socket.write(
      Buffer.concat([
        Buffer.from([0x00, 0x00, 0x00, 0x04, 0x01, 0xff, 0xff, 0x0a]), // stale HTTP/2 frame bytes
        Buffer.from(`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`),
        Buffer.from(`CORRAL-READY ${"0".repeat(32)} 0.0.1\n`), // a READY for an older host
        Buffer.from(`CORRAL-READY ${agent.nonce.slice(0, 31)} 0.0.2\n`), // one digit short
        Buffer.from(`CORRAL-READY ${agent.nonce} 1.2.3\nHTTP2`),
      ]),
    );
    const { socket, agentVersion } = await done;
    assert.equal(agentVersion, "1.2.3");
    assert.equal((await readBytes(socket, 5)).toString(), "HTTP2");
    socket.destroy();
    await fake.close();
  });

  test("skips more than a megabyte of garbage, keeping a READY that straddles the skipped part", async () => {
    const fake = await fakeAgent();
    const done = handshake(fake.path, AbortSignal.timeout(1500));
    const agent = await fake.agent;
    const readyLine = `CORRAL-READY ${agent.nonce} 0.1.0\nok`;
    // The start of READY arrives at the end of the garbage, in the same write; the rest comes later.
    agent.socket.write(Buffer.concat([Buffer.alloc(1024 * 1024 + 100, "x"), Buffer.from(readyLine.slice(0, 20))]));
    await sleep(50);
    agent.socket.write(readyLine.slice(20));
    const { socket, agentVersion } = await done;
    assert.equal(agentVersion, "0.1.0");
    assert.equal((await readBytes(socket, 2)).toString(), "ok");
  });

  test("assembles a READY line split across chunks, including inside the nonce", async () => {
    const fake = await fakeAgent();
    let resolved = false;
    const done = handshake(fake.path, AbortSignal.timeout(2000)).then((r) => {
      resolved = true;
      return r;
    });
    const agent = await fake.agent;
    const line = `garbage\nCORRAL-READY ${agent.nonce} 0.1.0\r\nnext`;
    const cuts = [3, 15, 20, 40, line.length - 8, line.length - 5];
    let from = 0;
    for (const cut of cuts) {
      agent.socket.write(line.slice(from, cut));
      from = cut;
      await sleep(10);
      assert.equal(resolved, false, `resolved after only ${JSON.stringify(line.slice(0, cut))}`);
    }
    agent.socket.write(line.slice(from));
    const { socket, agentVersion } = await done;
    assert.equal(agentVersion, "0.1.0", "the CR of a CRLF line ending is not part of the version");
    assert.equal((await readBytes(socket, 4)).toString(), "next");
    socket.destroy();
    await fake.close();
  });

  test("rejects with HandshakeError when the agent closes first", async () => {
    const fake = await fakeAgent();
    const done = handshake(fake.path, AbortSignal.timeout(2000));
    const agent = await fake.agent;
    agent.socket.end(`CORRAL-READY ${"f".repeat(32)} 0.1.0\n`);
    await assert.rejects(done, (err: unknown) => {
      assert.ok(err instanceof HandshakeError);
      assert.equal(err.name, "HandshakeError");
      assert.equal(err.message, "Agent socket closed during the handshake");
      return true;
    });
    await fake.close();
  });

  test("rejects when the agent closes after sending READY without its newline", async () => {
    const fake = await fakeAgent();
    const done = handshake(fake.path, AbortSignal.timeout(2000));
    const agent = await fake.agent;
    agent.socket.end(`CORRAL-READY ${agent.nonce} 0.1.0`);
    await assert.rejects(done, { name: "HandshakeError", message: "Agent socket closed during the handshake" });
    await fake.close();
  });

  test("an abort rejects with HandshakeError and destroys the socket", async () => {
    const fake = await fakeAgent();
    const controller = new AbortController();
    const done = handshake(fake.path, controller.signal);
    const agent = await fake.agent;
    agent.socket.write("not READY yet\n");
    await sleep(10);
    controller.abort();
    await assert.rejects(done, (err: unknown) => {
      assert.ok(err instanceof HandshakeError);
      assert.equal(err.message, "Agent did not answer the handshake in time");
      return true;
    });
    await Promise.race([agent.closed, sleep(1000).then(() => assert.fail("the host socket was not closed after the abort"))]);
    await fake.close();
  });

  test("a READY after the abort does not resolve", async () => {
    const fake = await fakeAgent();
    const controller = new AbortController();
    const done = handshake(fake.path, controller.signal);
    const agent = await fake.agent;
    controller.abort();
    agent.socket.write(`CORRAL-READY ${agent.nonce} 0.1.0\n`);
    await assert.rejects(done, HandshakeError);
    await fake.close();
  });

  test("an already aborted signal rejects without connecting", async () => {
    const fake = await fakeAgent();
    let connected = false;
    fake.agent.then(
      () => {
        connected = true;
      },
      () => undefined,
    );
    await assert.rejects(handshake(fake.path, AbortSignal.abort()), {
      name: "HandshakeError",
      message: "Agent handshake aborted before it started",
    });
    await sleep(20);
    assert.equal(connected, false);
    await fake.close();
  });

  test("a missing socket path rejects with HandshakeError carrying the cause", async () => {
    const path = join(dir, "nobody-here.sock");
    await assert.rejects(handshake(path, AbortSignal.timeout(2000)), (err: unknown) => {
      assert.ok(err instanceof HandshakeError);
      assert.match(err.message, /^Cannot reach the agent socket: connect ENOENT /);
      assert.equal((err.cause as NodeJS.ErrnoException).code, "ENOENT");
      return true;
    });
  });

  test("an agent that hangs up at once rejects with HandshakeError", async () => {
    const path = join(dir, `hangup-${++count}.sock`);
    const server = createServer((s) => s.destroy());
    await new Promise<void>((resolve) => server.listen(path, resolve));
    await assert.rejects(handshake(path, AbortSignal.timeout(2000)), (err: unknown) => {
      assert.ok(err instanceof HandshakeError);
      // Either the close is seen first, or the HELLO write fails (EPIPE/ECONNRESET) first.
      assert.match(err.message, /^(Agent socket closed during the handshake|Cannot reach the agent socket: .*(EPIPE|ECONNRESET).*)$/);
      return true;
    });
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
