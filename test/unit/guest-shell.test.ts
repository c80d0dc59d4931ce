// The agent's shell and forward routes, run on this host: a real HTTP/2 server with the agent's router,
// node-pty's real addon (the same file the image carries) and real shells and sockets. The VM tests
// (test/integration/shell.test.ts) cover the same routes inside a guest.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { constants as h2, connect, createServer, type ClientHttp2Session, type ClientHttp2Stream, type Http2Server } from "node:http2";
import { createServer as createTcpServer, type Server } from "node:net";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { registerForwardRoutes } from "../../src/guest/forward.ts";
import { loadPtyAddon } from "../../src/guest/pty.ts";
import { AgentRouter } from "../../src/guest/router.ts";
import { registerShellRoutes } from "../../src/guest/shell.ts";
import { FORWARD_AGENT_PATH, FORWARD_TARGET_HEADER, type ForwardTarget } from "../../src/protocol/forward.ts";
import { encodeFrame, encodeWindowSize, FRAME_TYPE, FrameDecoder, SHELL_AGENT_PATH, SHELL_SPEC_HEADER, type ShellSpec } from "../../src/protocol/shell.ts";

const ADDON = join(dirname(createRequire(import.meta.url).resolve("node-pty/package.json")), "build", "Release", "pty.node");
const isRoot = process.getuid?.() === 0;

interface ShellRun {
  stream: ClientHttp2Stream;
  status: number;
  /** Data received so far, as text. */
  output(): string;
  /** The session-close payload, once it came. */
  closed: Promise<Record<string, unknown> | undefined>;
  type(text: string): void;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
}

async function waitUntil(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await sleep(20);
  }
}

function processesMatching(text: string): string[] {
  try {
    return execFileSync("pgrep", ["-f", text], { encoding: "utf8" }).trim().split("\n").filter(Boolean);
  } catch {
    return [];
  }
}

describe("agent shell and forward routes, on this host", { timeout: 120_000 }, () => {
  let server: Http2Server;
  let session: ClientHttp2Session;

  before(async () => {
    const router = new AgentRouter();
    registerShellRoutes(router, () => loadPtyAddon(ADDON));
    registerForwardRoutes(router);
    server = createServer();
    server.on("stream", (stream, headers) => void router.dispatch(stream, headers));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    session = connect(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
  });

  after(async () => {
    session.destroy(); // (close() would wait for the streams the tests left half open)
    await new Promise((resolve) => server.close(resolve));
  });

  async function openShell(spec: ShellSpec): Promise<ShellRun> {
    const stream = session.request({ [h2.HTTP2_HEADER_METHOD]: "POST", [h2.HTTP2_HEADER_PATH]: SHELL_AGENT_PATH, [SHELL_SPEC_HEADER]: JSON.stringify(spec) }, { endStream: false });
    const status = await new Promise<number>((resolve) => stream.once("response", (headers) => resolve(Number(headers[h2.HTTP2_HEADER_STATUS]))));
    let text = "";
    let closePayload: Record<string, unknown> | undefined;
    const decoder = new FrameDecoder();
    if (status === 200)
      stream.on("data", (chunk: Buffer) => {
        for (const frame of decoder.push(chunk)) {
          if (frame.type === FRAME_TYPE.data) text += Buffer.from(frame.payload).toString("utf8");
          else if (frame.type === FRAME_TYPE.sessionClose) closePayload = JSON.parse(Buffer.from(frame.payload).toString("utf8")) as Record<string, unknown>;
        }
      });
    // The agent ends its side after the session-close frame (our side stays open, as the daemon's does).
    const closed = new Promise<Record<string, unknown> | undefined>((resolve) => {
      stream.once("end", () => resolve(closePayload));
      stream.once("close", () => resolve(closePayload));
    });
    return {
      stream,
      status,
      output: () => text,
      closed,
      type: (input) => void stream.write(encodeFrame(FRAME_TYPE.data, Buffer.from(input))),
      waitFor: async (pattern, timeoutMs = 10_000) => {
        await waitUntil(() => pattern.test(text), `${pattern} in ${JSON.stringify(text.slice(-200))}`, timeoutMs);
        return text;
      },
    };
  }

  test("a shell echoes what is typed, follows the window size and reports its exit code", async () => {
    const shell = await openShell({ shell: "/bin/sh", cwd: "/tmp", cols: 100, rows: 30 });
    assert.equal(shell.status, 200);
    shell.type("stty size; pwd\r");
    await shell.waitFor(/30 100\r\n\/tmp\r\n/);
    shell.stream.write(encodeWindowSize(132, 43));
    shell.stream.write(encodeFrame(FRAME_TYPE.heartbeat));
    shell.type("stty size\r");
    await shell.waitFor(/43 132\r\n/);
    shell.type("exit 3\r");
    assert.deepEqual(await shell.closed, { exit_code: 3 });
  });

  test("a shell killed by a signal reports it", async () => {
    const shell = await openShell({ shell: "/bin/sh" });
    shell.type("kill -HUP $$\r"); // (an interactive shell ignores SIGTERM)
    assert.deepEqual(await shell.closed, { exit_code: 129, signal: "SIGHUP" });
  });

  test("input far larger than the terminal's buffer arrives whole (writes wait, they do not spin or drop)", async () => {
    const shell = await openShell({ shell: "/bin/sh" });
    // The reader starts a second late: meanwhile the terminal's buffer is full and writes must wait.
    shell.type("stty raw -echo; echo READY; sleep 1; head -c 300000 | wc -c; exit\r");
    await shell.waitFor(/READY/);
    const started = process.cpuUsage();
    shell.stream.write(encodeFrame(FRAME_TYPE.data, Buffer.alloc(300_000, 0x61)));
    await shell.waitFor(/300000/);
    assert.deepEqual(await shell.closed, { exit_code: 0 });
    const used = process.cpuUsage(started);
    assert.ok(used.user + used.system < 2_000_000, `the writer used ${(used.user + used.system) / 1000} ms of CPU`);
  });

  test("cancelling the stream kills every process of the shell's session, jobs included", async () => {
    const shell = await openShell({ shell: "/bin/sh" });
    shell.type("sleep 4711.25 & sleep 4711.5\r");
    await waitUntil(() => processesMatching("sleep 4711\\.(25|5)").length === 2, "both sleeps to run");
    shell.stream.close(h2.NGHTTP2_CANCEL);
    await waitUntil(() => processesMatching("sleep 4711\\.(25|5)").length === 0, "the sleeps to be gone", 5000);
  });

  test("a shutdown frame ends the session the same way", async () => {
    const shell = await openShell({ shell: "/bin/sh" });
    shell.type("sleep 4712.5\r");
    await waitUntil(() => processesMatching("sleep 4712\\.5").length === 1, "sleep to run");
    shell.stream.write(encodeFrame(FRAME_TYPE.shutdown));
    await waitUntil(() => processesMatching("sleep 4712\\.5").length === 0, "sleep to be gone", 5000);
    assert.deepEqual(await shell.closed, { exit_code: 137, signal: "SIGKILL" }, "the status of the killed shell still comes back");
  });

  test("a job left in the background does not hold the session open after the shell exits", async () => {
    const shell = await openShell({ shell: "/bin/sh" });
    shell.type("sleep 4713.5 & exit 0\r");
    const started = performance.now();
    assert.deepEqual(await shell.closed, { exit_code: 0 });
    assert.ok(performance.now() - started < 3000);
    await waitUntil(() => processesMatching("sleep 4713\\.5").length === 0, "the job to get SIGHUP", 5000);
  });

  test("uid and gid switch the user", { skip: !isRoot && "needs root" }, async () => {
    const shell = await openShell({ shell: "/bin/sh", uid: 65534, gid: 65534, cwd: "/" });
    shell.type("id -u; id -g; exit\r");
    await shell.waitFor(/65534\r\n65534\r\n/);
    assert.deepEqual(await shell.closed, { exit_code: 0 });
  });

  test("a missing shell or directory is a 400 with the reason", async () => {
    for (const [spec, message] of [
      [{ shell: "/bin/no-such-shell" }, /Shell "\/bin\/no-such-shell" does not exist/],
      [{ cwd: "/no/such/dir" }, /Working directory "\/no\/such\/dir" does not exist/],
    ] as const) {
      const shell = await openShell(spec);
      assert.equal(shell.status, 400);
      shell.stream.setEncoding("utf8");
      let body = "";
      for await (const chunk of shell.stream) body += chunk as string;
      assert.match((JSON.parse(body) as { error: string }).error, message);
    }
  });

  describe("forward", () => {
    let echo: Server;
    let port: number;

    before(async () => {
      echo = createTcpServer((socket) => socket.pipe(socket));
      await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve));
      port = (echo.address() as { port: number }).port;
    });
    after(() => new Promise<void>((resolve) => echo.close(() => resolve())));

    function open(target: ForwardTarget): { stream: ClientHttp2Stream; response: Promise<{ status: number; body: string }> } {
      const stream = session.request(
        { [h2.HTTP2_HEADER_METHOD]: "POST", [h2.HTTP2_HEADER_PATH]: FORWARD_AGENT_PATH, [FORWARD_TARGET_HEADER]: JSON.stringify(target) },
        { endStream: false },
      );
      const response = new Promise<{ status: number; body: string }>((resolve) => {
        stream.once("response", async (headers) => {
          const status = Number(headers[h2.HTTP2_HEADER_STATUS]);
          if (status === 200) return resolve({ status, body: "" });
          let body = "";
          for await (const chunk of stream) body += String(chunk);
          resolve({ status, body });
        });
      });
      return { stream, response };
    }

    test("bytes go to the target and its answer comes back; ending our side half-closes it", async () => {
      const { stream, response } = open({ kind: "tcp", host: "127.0.0.1", port });
      assert.equal((await response).status, 200);
      const chunks: Buffer[] = [];
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      const ended = new Promise((resolve) => stream.once("end", resolve));
      const payload = Buffer.alloc(2 * 1024 * 1024);
      for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) % 251;
      stream.end(payload);
      await ended;
      assert.ok(Buffer.concat(chunks).equals(payload), "the echo is byte for byte what was sent");
    });

    test("a refused connection is a 502 that says so", async () => {
      const closed = createTcpServer();
      await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
      const freePort = (closed.address() as { port: number }).port;
      await new Promise((resolve) => closed.close(resolve));
      const { response } = open({ kind: "tcp", host: "127.0.0.1", port: freePort });
      const answer = await response;
      assert.equal(answer.status, 502);
      assert.deepEqual(JSON.parse(answer.body), { error: `Cannot connect to 127.0.0.1:${freePort} in the guest: connection refused`, code: "upstream_unreachable" });
      const missing = await open({ kind: "unix", path: "/no/such.sock" }).response;
      assert.equal(missing.status, 502);
      assert.match(missing.body, /Cannot connect to unix:\/no\/such.sock in the guest: no such socket/);
    });

    test("a malformed target is a 400", async () => {
      const answer = await open({ kind: "tcp", host: "bad host", port: 1 } as ForwardTarget).response;
      assert.equal(answer.status, 400);
      assert.match((JSON.parse(answer.body) as { error: string }).error, /invalid host "bad host"/);
    });
  });
});
