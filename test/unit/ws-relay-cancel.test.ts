// How the daemon's WebSocket relays (shell, forward) end the agent's stream when their client goes: a cut
// is a reset alone, so the agent never reads what was sent as a complete input; a forward's client that
// closes the WebSocket properly still half-closes the target.
import assert from "node:assert/strict";
import { once } from "node:events";
import type { ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import { PassThrough } from "node:stream";
import { after, test } from "node:test";
import { WebSocket, WebSocketServer } from "ws";
import { relayForward } from "../../src/daemon/websocket/forward-relay.ts";
import { relayShell } from "../../src/daemon/websocket/shell-relay.ts";
import type { AgentDuplex } from "../../src/daemon/websocket/agent-sessions.ts";
import { encodeFrame, FRAME_TYPE } from "../../src/protocol/shell.ts";
import { startScriptedAgent } from "../helpers/scripted-agent.ts";

const agent = await startScriptedAgent();
after(() => agent.close());

/** A WebSocket pair over loopback: the server's side is what a relay gets. */
async function webSocketPair(): Promise<{ server: WebSocket; client: WebSocket }> {
  const wss = new WebSocketServer({ port: 0, host: "127.0.0.1" });
  await once(wss, "listening");
  after(() => wss.close());
  const serverSide = new Promise<WebSocket>((resolve) => wss.once("connection", resolve));
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
  client.on("error", () => undefined);
  await once(client, "open");
  const server = await serverSide;
  server.on("error", () => undefined);
  return { server, client };
}

/** A duplex to a stand-in agent, which records how the request body ended and acts as the agent does. */
async function agentDuplex(): Promise<{ duplex: AgentDuplex; received: (bytes: number) => Promise<void>; ended: Promise<string[]> }> {
  const seen: string[] = [];
  let count = 0;
  const waiting: Array<{ bytes: number; resolve: () => void }> = [];
  let serverStream!: ServerHttp2Stream;
  const { stream, cancel } = await agent.request((s) => {
    serverStream = s;
    s.on("data", (chunk: Buffer) => {
      count += chunk.length;
      for (const wait of waiting) if (count >= wait.bytes) wait.resolve();
    });
    for (const name of ["end", "aborted"]) s.on(name, () => seen.push(name));
    // As the agent's routes do: node ends a reset body too, so a reset must end it in an error.
    s.once("aborted", () => s.destroy(new Error("cut off")));
  });
  const toAgent = new PassThrough();
  toAgent.pipe(stream);
  return {
    duplex: { toAgent, fromAgent: stream, cancel },
    received: (bytes) => (count >= bytes ? Promise.resolve() : new Promise((resolve) => waiting.push({ bytes, resolve }))),
    ended: (async () => {
      await new Promise<void>((resolve) => setImmediate(resolve));
      await new Promise<void>((resolve) => serverStream.once("close", () => resolve()));
      return seen;
    })(),
  };
}

test("forward: a client that vanishes without a close frame cuts the agent's stream, no end of input first", async () => {
  const { server, client } = await webSocketPair();
  const { duplex, received, ended } = await agentDuplex();
  relayForward(server, duplex, "tcp:127.0.0.1:80");
  client.send(Buffer.alloc(1000, 0x61));
  await received(1000);
  client.terminate();
  assert.deepEqual(await ended, ["aborted"]);
});

test("forward: a client that closes the WebSocket properly half-closes the agent's stream", async () => {
  const { server, client } = await webSocketPair();
  const { duplex, received, ended } = await agentDuplex();
  relayForward(server, duplex, "tcp:127.0.0.1:80");
  client.send(Buffer.alloc(1000, 0x61));
  await received(1000);
  client.close(1000);
  assert.deepEqual((await ended)[0], "end");
});

test("shell: a client that leaves cuts the agent's stream, no end of input first", async () => {
  const { server, client } = await webSocketPair();
  const { duplex, received, ended } = await agentDuplex();
  relayShell(server, duplex);
  const frame = encodeFrame(FRAME_TYPE.data, Buffer.from("echo hi\n"));
  client.send(frame);
  await received(frame.length);
  client.close(1000);
  assert.deepEqual(await ended, ["aborted"]);
});
