// The HTTP edges of both servers (a real daemon with one VM, auth on and a unix socket; a real controller
// with an API key), over raw sockets: malformed requests get a JSON {"error","code"} with the right 4xx and
// a closed connection; requests whose headers or body trickle in, with a valid token or without, get 408
// `request_timeout` and are closed, under deadlines shortened for the test (1 s); a streamed body that keeps
// moving is never cut, one that stops is; answers that stay quiet (an exec of `sleep`, a WebSocket) are not
// timed at all.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { RunningDaemon } from "../../src/daemon/daemon.ts";
import { CorralClient } from "../../src/sdk/index.ts";
import { startInProcess, type InProcessServers } from "../helpers/in-process.ts";
import { endpointOf, openSocket, plainRequest, rawRequest, readAnswer, trickle, upgradeRequest, type RawAnswer, type RawEndpoint } from "../helpers/raw-http.ts";

const DEADLINES = { headersMs: 1000, bodyMs: 1000, idleMs: 1000 };

interface Target {
  name: string;
  endpoint: RawEndpoint;
  token: string;
  /** A route with a JSON body, and a body it accepts the shape of. */
  jsonRoute: string;
}

function assertJsonError(answer: RawAnswer, status: number, code: string, what: string): void {
  assert.equal(answer.status, status, `${what}: ${answer.status} ${answer.body}`);
  assert.match(answer.headers["content-type"] ?? "", /application\/json/, what);
  const body = JSON.parse(answer.body) as { error?: unknown; code?: unknown };
  assert.equal(typeof body.error, "string", what);
  assert.equal(body.code, code, `${what}: ${answer.body}`);
}

describe("HTTP edges of both servers", { timeout: 600_000 }, () => {
  let running: InProcessServers;
  let daemon: RunningDaemon;
  let targets: Target[];
  let token: string;
  let API_KEY: string;
  let vm: string;

  before(async () => {
    running = await startInProcess({ httpDeadlines: DEADLINES });
    daemon = running.daemon;
    token = running.token;
    API_KEY = running.apiKey;
    targets = [
      { name: "daemon", endpoint: endpointOf(daemon.url), token, jsonRoute: "/secrets" },
      { name: "daemon's unix socket", endpoint: { socketPath: running.socketPath }, token, jsonRoute: "/secrets" },
      { name: "controller", endpoint: endpointOf(running.controller.url), token: API_KEY, jsonRoute: "/api/hosts" },
    ];
    const client = new CorralClient({ url: daemon.url, token });
    vm = (await client.createNode("sbox", {}, { wait: "agent", timeout: "300s" })).hostname;
    await client.close();
  });

  after(() => running?.stop());

  test("malformed HTTP gets a JSON error with the right 4xx, and the connection closed", async () => {
    for (const target of targets) {
      const auth = `authorization: Bearer ${target.token}\r\n`;
      const cases: [string, string, number, string][] = [
        ["an unknown method", "FOO /healthz HTTP/1.1\r\nhost: x\r\n\r\n", 400, "invalid_request"],
        ["a space in the target", "GET /heal thz HTTP/1.1\r\nhost: x\r\n\r\n", 400, "invalid_request"],
        ["a bad HTTP version", "GET /healthz HTTP/7.1\r\nhost: x\r\n\r\n", 400, "invalid_request"],
        ["a request line of garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "invalid_request"],
        ["a header name with a space", "GET /healthz HTTP/1.1\r\nhost: x\r\nbad header: 1\r\n\r\n", 400, "invalid_request"],
        ["a control character in a header", "GET /healthz HTTP/1.1\r\nhost: x\r\nx-a: a\x01b\r\n\r\n", 400, "invalid_request"],
        ["headers over 16 KiB", `GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(20_000)}\r\n\r\n`, 431, "headers_too_large"],
        [
          "Content-Length and Transfer-Encoding together",
          `POST ${target.jsonRoute} HTTP/1.1\r\nhost: x\r\n${auth}content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n`,
          400,
          "invalid_request",
        ],
        ["a Content-Length that is not a number", `POST ${target.jsonRoute} HTTP/1.1\r\nhost: x\r\n${auth}content-length: five\r\n\r\n{}`, 400, "invalid_request"],
        [
          "a bad chunk size",
          `POST ${target.jsonRoute} HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`,
          400,
          "invalid_request",
        ],
        [
          "a body shorter than its Content-Length",
          `POST ${target.jsonRoute} HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ncontent-length: 100\r\n\r\n{"name":`,
          408,
          "request_timeout",
        ],
      ];
      for (const [what, text, status, code] of cases) {
        const answer = await rawRequest(target.endpoint, text, 30_000);
        assertJsonError(answer, status, code, `${target.name}, ${what}`);
        assert.ok(answer.closed, `${target.name}, ${what}: the connection is closed`);
      }
    }
  });

  test("headers that trickle in are cut with 408, with or without a token", async () => {
    for (const target of targets) {
      for (const auth of ["", `authorization: Bearer ${target.token}\r\n`]) {
        const text = `GET /healthz HTTP/1.1\r\nhost: x\r\n${auth}x-slow: ${"a".repeat(200)}\r\n\r\n`;
        const answer = await trickle(target.endpoint, text, { everyMs: 100, timeoutMs: 60_000 });
        assertJsonError(answer, 408, "request_timeout", `${target.name}: slow headers ${auth ? "with" : "without"} a token`);
        assert.ok(answer.closed && !answer.sentAll, `${target.name}: the connection is closed before the headers could end`);
      }
    }
  });

  test("a JSON body that trickles in is cut with 408, with a token; without one the 401 is followed by the close", async () => {
    for (const target of targets) {
      const body = JSON.stringify({ name: "slow", data: "x".repeat(100) });
      const head = (auth: string): string => `POST ${target.jsonRoute} HTTP/1.1\r\nhost: x\r\n${auth}content-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n`;
      const slow = await trickle(target.endpoint, body, { head: head(`authorization: Bearer ${target.token}\r\n`), everyMs: 100, timeoutMs: 60_000 });
      assertJsonError(slow, 408, "request_timeout", `${target.name}: slow JSON body with a token`);
      assert.ok(slow.closed && !slow.sentAll, `${target.name}: closed before the body could end`);
      const refused = await trickle(target.endpoint, body, { head: head(""), everyMs: 100, timeoutMs: 60_000, afterAnswer: true });
      assertJsonError(refused, 401, "unauthorized", `${target.name}: slow JSON body without a token`);
      assert.ok(refused.closed && !refused.sentAll, `${target.name}: after the 401, the trickling body is not read for ever`);
    }
  });

  test("a streamed upload that keeps moving is never cut; one that stops is", async () => {
    const daemonEndpoint = targets[0]!.endpoint;
    // 40 pieces 100 ms apart: 4 s, four times the inactivity deadline, never a pause of 1 s.
    const data = "0123456789".repeat(4);
    const head = `POST /vm/${vm}/cp?path=/tmp/uploaded&mode=binary HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\nconnection: close\r\ncontent-type: application/octet-stream\r\ncontent-length: ${data.length}\r\n\r\n`;
    const moving = await trickle(daemonEndpoint, data, { head, everyMs: 100, timeoutMs: 120_000 });
    assert.ok(moving.sentAll, `the upload was let in whole: ${moving.status} ${moving.body}`);
    assert.ok(moving.status >= 200 && moving.status < 300, `${moving.status} ${moving.body}`);
    const client = new CorralClient({ url: daemon.url, token });
    try {
      const copied = await client.execBuffered(vm, { cmd: "cat", args: ["/tmp/uploaded"] });
      assert.equal(copied.stdout, data);
    } finally {
      await client.close();
    }

    // Refused before it is read (no token): the rest may keep moving, it is still only drained for a while.
    const refused = await trickle(daemonEndpoint, data, { head: head.replace(`authorization: Bearer ${token}\r\n`, ""), everyMs: 100, timeoutMs: 120_000, afterAnswer: true });
    assertJsonError(refused, 401, "unauthorized", "an upload without the token");
    assert.ok(refused.closed && !refused.sentAll, "an unauthenticated upload that keeps moving is not drained for ever");

    const stalled = await trickle(daemonEndpoint, data.slice(0, 10), {
      head: head.replace(`content-length: ${data.length}`, "content-length: 1000"),
      everyMs: 50,
      timeoutMs: 120_000,
    });
    assertJsonError(stalled, 408, "request_timeout", "an upload that stopped");
    assert.ok(stalled.closed);
  });

  test("exec stdin is a session: once the command runs, its input may pause longer than the deadline, as in a shell", async () => {
    const socket = await openSocket(targets[0]!.endpoint);
    try {
      const answer = readAnswer(socket, 120_000);
      socket.write(`POST /vm/${vm}/exec?cmd=cat&stdin=true HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n`);
      const send = async (from: number, to: number): Promise<void> => {
        for (let i = from; i < to && !socket.destroyed; i++) {
          const line = `line ${i}\n`;
          socket.write(`${line.length.toString(16)}\r\n${line}\r\n`);
          await sleep(200);
        }
      };
      await send(0, 10);
      // Four times the inactivity deadline without a byte of input: a command waiting for its input.
      await sleep(4000);
      assert.ok(!socket.destroyed, "a pause in the input of a running command is not cut");
      await send(10, 20);
      socket.write("0\r\n\r\n");
      const result = await answer;
      assert.equal(result.status, 200);
      assert.ok(result.complete && !result.timedOut, `the exchange ended with the command: ${result.body.slice(-300)}`);
      for (let i = 0; i < 20; i++) assert.ok(result.body.includes(`line ${i}\\n`), `line ${i} came back: ${result.body.slice(0, 400)}`);
      assert.match(result.body, /"type":"exit"/);
    } finally {
      socket.destroy();
    }
  });

  test("many requests with bodies on one kept-alive connection leave nothing behind on it", async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error): number => warnings.push(String(warning));
    process.on("warning", onWarning);
    const socket = await openSocket(targets[0]!.endpoint);
    try {
      for (let i = 0; i < 30; i++) {
        const answer = readAnswer(socket, 30_000);
        const body = JSON.stringify({ name: "Not A Name" });
        socket.write(`POST /secrets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
        assert.equal((await answer).status, 400);
      }
    } finally {
      socket.destroy();
      process.off("warning", onWarning);
    }
    assert.deepEqual(
      warnings.filter((w) => w.includes("MaxListeners")),
      [],
    );
  });

  test("quiet answers are not timed: an exec of sleep, a WebSocket", async () => {
    const exec = await rawRequest(targets[0]!.endpoint, plainRequest("POST", `/vm/${vm}/exec?cmd=sleep&args=3`, { authorization: `Bearer ${token}` }), 120_000);
    assert.equal(exec.status, 200);
    assert.ok(exec.complete, "the NDJSON answer ended by itself");
    assert.match(exec.body, /"exit_code":0/);

    const socket = await openSocket(targets[2]!.endpoint);
    try {
      const opened = readAnswer(socket, 10_000);
      socket.write(upgradeRequest("/ws", { authorization: `Bearer ${API_KEY}` }));
      assert.equal((await opened).status, 101);
      await sleep(3000);
      assert.ok(!socket.destroyed, "a quiet WebSocket stays open past every deadline");
    } finally {
      socket.destroy();
    }
  });
});
