import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer as createH2Server, type ServerHttp2Stream } from "node:http2";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { test } from "node:test";
import { AgentClient } from "../../src/daemon/agent/agent-client.ts";
import { HANDSHAKE_READY } from "../../src/protocol/agent.ts";

/** What the agent's side of a request saw, in order. */
interface Seen {
  events: string[];
  bytes: number;
}

/** A stand-in agent on a unix socket: the handshake, then HTTP/2; it reads request bodies and never answers. */
async function fakeAgent(socketPath: string, onStream: (seen: Seen) => void): Promise<() => void> {
  const h2 = createH2Server({ settings: { initialWindowSize: 4 * 1024 * 1024 } });
  h2.on("stream", (stream: ServerHttp2Stream) => {
    const seen: Seen = { events: [], bytes: 0 };
    stream.on("data", (chunk: Buffer) => {
      seen.bytes += chunk.length;
    });
    for (const name of ["end", "aborted"]) stream.on(name, () => seen.events.push(name));
    // As the agent's upload route does: a reset body is a failed one.
    stream.once("aborted", () => stream.destroy(new Error("cut off")));
    stream.on("error", () => undefined);
    stream.on("close", () => onStream(seen));
  });
  const server = createNetServer((socket) => {
    socket.once("data", (hello: Buffer) => {
      const nonce = hello.toString("latin1").trim().split(" ")[1];
      socket.write(`${HANDSHAKE_READY} ${nonce} test\n`, () => h2.emit("connection", socket));
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return () => server.close();
}

/** Runs `cut` with a client of a stand-in agent; resolves with what the agent saw of the one request. */
async function agentSide(cut: (client: AgentClient) => void): Promise<Seen> {
  const dir = await mkdtemp(join(tmpdir(), "corral-agent-cancel-"));
  let resolveSeen: (seen: Seen) => void = () => undefined;
  const seen = new Promise<Seen>((resolve) => {
    resolveSeen = resolve;
  });
  const stop = await fakeAgent(join(dir, "agent.sock"), resolveSeen);
  const client = new AgentClient(join(dir, "agent.sock"));
  try {
    cut(client);
    return await seen;
  } finally {
    client.close();
    stop();
    await rm(dir, { recursive: true, force: true });
  }
}

// The daemon cancels an upload whose client went away. The agent must see a reset body, never an ended one:
// an ended body is a complete file, and the agent puts it in place of the old one.
test("a cancelled upload reaches the agent as a reset, not as the end of its body", async () => {
  let outcome: Promise<string> = Promise.resolve("not called");
  const seen = await agentSide((client) => {
    const cancel = new AbortController();
    let sent = 0;
    // 1 MiB, well inside the agent's window, then nothing: the agent has read all of it when the cut comes.
    const body = new Readable({
      read() {
        if (sent >= 1024 * 1024) return;
        sent += 64 * 1024;
        this.push(Buffer.alloc(64 * 1024, 0x61));
      },
    });
    outcome = client.call("POST", "/v1/files/upload", { body, signal: cancel.signal }).then(
      () => "answered",
      (err: Error) => err.message,
    );
    setTimeout(() => cancel.abort(), 300);
  });
  assert.match(await outcome, /did not answer in time/);
  assert.equal(seen.bytes, 1024 * 1024);
  assert.deepEqual(seen.events, ["aborted"]);
});

test("an upload whose source fails reaches the agent as a reset, not as the end of its body", async () => {
  const seen = await agentSide((client) => {
    const body = new Readable({ read() {} });
    body.push(Buffer.alloc(256 * 1024, 0x61));
    client.call("POST", "/v1/files/upload", { body, signal: new AbortController().signal }).catch(() => undefined);
    setTimeout(() => body.destroy(new Error("the client went away")), 300);
  });
  assert.equal(seen.bytes, 256 * 1024);
  assert.deepEqual(seen.events, ["aborted"]);
});
