// Shells and port forwarding end to end: a real daemon (auth on, TCP and a unix socket), one real VM, the
// SDK, raw WebSockets where the wire matters, the CLI, and OpenSSH through a forwarded port to the guest's
// dropbear.
import assert from "node:assert/strict";
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { encodeFrame, encodeWindowSize, FRAME_TYPE } from "../../src/protocol/shell.ts";
import { CorralApiError, CorralClient, ForwardClosedError, type ShellSession } from "../../src/sdk/index.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";
import { openAccepted, openRefused, type RawTarget } from "../helpers/raw-websocket.ts";
import { until } from "../helpers/until.ts";

const CORRAL = fileURLToPath(new URL("../../corral", import.meta.url));
const run = promisify(execFile);

const CONFIG = (socket: string): string => `config:
  api:
    bind_address: 127.0.0.1
    socket: ${socket}
    auth:
      enabled: true
  host_groups:
    - name: sbox
      image: base
      count: 0
      vcpu: 1
      ram_mb: 512
`;

/** An echo server in the guest on TCP port 7000 and on /tmp/echo.sock (node is in the image). */
const ECHO_SERVER = `const net = require("net");
for (const where of [7000, "/tmp/echo.sock"]) net.createServer((s) => { s.on("error", () => {}); s.pipe(s); }).listen(where);`;

/** Collects a session's output and waits for patterns in it. */
function watch(session: ShellSession): { text(): string; waitFor(pattern: RegExp, timeoutMs?: number): Promise<void> } {
  let text = "";
  session.onData((chunk) => (text += chunk.toString("utf8")));
  return {
    text: () => text,
    waitFor: (pattern, timeoutMs = 20_000) =>
      until(() => (pattern.test(text) ? true : undefined), `${pattern} in ${JSON.stringify(text.slice(-300))}`, timeoutMs).then(() => undefined),
  };
}

/** Reads `length` bytes from a stream. */
function readBytes(stream: NodeJS.ReadableStream, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      size += chunk.length;
      if (size >= length) {
        stream.off("data", onData);
        resolve(Buffer.concat(chunks));
      }
    };
    stream.on("data", onData);
    stream.once("error", reject);
    stream.once("end", () => (size < length ? reject(new Error(`The stream ended after ${size} of ${length} bytes`)) : undefined));
  });
}

interface CliRun {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
}

function startCli(args: string[], env: NodeJS.ProcessEnv, input?: string): CliRun {
  const child = spawn(CORRAL, args, { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  if (input !== undefined) child.stdin?.end(input);
  // A CLI that never ends fails its test with what it printed, instead of hanging the suite.
  const deadline = setTimeout(() => {
    stderr += `\n[test: no exit within ${CLI_DEADLINE_MS} ms; stdout so far: ${JSON.stringify(stdout)}]`;
    child.kill("SIGKILL");
  }, CLI_DEADLINE_MS);
  void exited.then(() => clearTimeout(deadline));
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

const CLI_DEADLINE_MS = 60_000;

describe("shell and port forwarding", { timeout: 900_000 }, () => {
  let daemon: TestDaemon;
  let client: CorralClient;
  let token: string;
  let tcp: RawTarget;
  let socketPath: string;
  let hostname: string;
  let keyDir: string;
  let cliEnv: NodeJS.ProcessEnv;

  const guest = async (script: string): Promise<string> => (await client.execBuffered(hostname, { cmd: "sh", args: ["-c", script] })).stdout;
  const processes = async (pattern: string): Promise<string[]> =>
    (await guest(`ps -o pid,args | grep -E '${pattern}' | grep -v grep || true`)).split("\n").filter((line) => line.trim() !== "");

  before(async () => {
    keyDir = await mkdtemp(join(tmpdir(), "corral-ssh-"));
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "corral-test", "-f", join(keyDir, "id")]);
    daemon = await TestDaemon.create((stateDir) => CONFIG(join(stateDir, "api.sock")));
    socketPath = join(daemon.stateDir, "api.sock");
    await daemon.start();
    token = readFileSync(join(daemon.stateDir, "auth", "token"), "utf8").trim();
    client = daemon.client;
    tcp = { url: daemon.url, token };
    cliEnv = { CORRAL_URL: daemon.url, CORRAL_TOKEN: token };
    const created = await client.createNode("sbox", { ssh_keys: [readFileSync(join(keyDir, "id.pub"), "utf8").trim()] }, { wait: "agent", timeout: "120s" });
    hostname = created.hostname;
    await guest(`cat > /tmp/echo.js <<'EOF'\n${ECHO_SERVER}\nEOF\nsetsid node /tmp/echo.js </dev/null >/tmp/echo.log 2>&1 &`);
    await until(async () => ((await guest("netstat -ltn | grep -q ':7000 ' && test -S /tmp/echo.sock && echo up")).trim() === "up" ? true : undefined), "the echo server");
  });

  after(async () => {
    await daemon.dispose();
    await rm(keyDir, { recursive: true, force: true });
  });

  describe("shell", () => {
    test("typing `echo hi` reads hi back", async () => {
      const session = await client.shell(hostname);
      const out = watch(session);
      session.write("echo hi\r");
      await out.waitFor(/\r\nhi\r\n/);
      session.close();
      await session.exit;
    });

    test("a window-size frame changes what `stty size` says in the guest", async () => {
      const session = await client.shell(hostname, { cols: 100, rows: 30 });
      const out = watch(session);
      session.write("stty size\r");
      await out.waitFor(/\r\n30 100\r\n/);
      session.resize(132, 43);
      session.write("stty size\r");
      await out.waitFor(/\r\n43 132\r\n/);
      session.close();
      await session.exit;
    });

    test("when the shell exits, the last message is a session-close frame, then a normal close with the exit code", async () => {
      const raw = await openAccepted(tcp, `/vm/${hostname}/shell`);
      raw.ws.send(encodeFrame(FRAME_TYPE.data, Buffer.from("exit 3\r")));
      const closed = await raw.closed;
      assert.deepEqual(closed, { code: 1000, reason: "Shell exited with code 3" });
      assert.deepEqual([...(raw.messages.at(-1) as Buffer)], [0x05, 0, 0, 0, 0], "session close, empty");
      for (const message of raw.messages.slice(0, -1)) {
        assert.equal(message[0], 0x01, "every other message is one data frame");
        assert.equal(message.readUInt32BE(1), message.length - 5, "one whole frame per message");
      }
      const session = await client.shell(hostname);
      session.write("exit 7\r");
      assert.deepEqual(await session.exit, { code: 7, closeCode: 1000, reason: "Shell exited with code 7" });
    });

    test("closing the client kills the shell and everything it started (checked with ps in the guest)", async () => {
      const session = await client.shell(hostname);
      const out = watch(session);
      session.write("sleep 4711 & sleep 4712\r");
      await until(async () => ((await processes("sleep 471[12]")).length === 2 ? true : undefined), "both sleeps");
      assert.ok((await processes("sh -l")).length >= 1, "the shell runs");
      // An abrupt end: no shutdown frame, no close handshake.
      (session as unknown as { ws: { terminate(): void } }).ws.terminate();
      await until(async () => ((await processes("sleep 471[12]|sh -l")).length === 0 ? true : undefined), "no shell or sleep left", 10_000);
      assert.ok(out.text().length > 0);
    });

    test("a shutdown frame from the client kills the shell and reports it", async () => {
      const session = await client.shell(hostname);
      const out = watch(session);
      session.write("sleep 4713\r");
      await until(async () => ((await processes("sleep 4713")).length === 1 ? true : undefined), "sleep");
      session.close();
      const exit = await session.exit;
      assert.equal(exit.closeCode, 1000);
      await until(async () => ((await processes("sleep 4713|sh -l")).length === 0 ? true : undefined), "nothing left", 10_000);
      assert.ok(out.text().includes("sleep 4713"));
    });

    test("heartbeats are ignored, frames split over messages or batched in one still arrive", async () => {
      const raw = await openAccepted(tcp, `/vm/${hostname}/shell`);
      raw.ws.send(encodeFrame(FRAME_TYPE.heartbeat));
      const frame = encodeFrame(FRAME_TYPE.data, Buffer.from("echo split-"));
      raw.ws.send(frame.subarray(0, 3));
      raw.ws.send(frame.subarray(3));
      raw.ws.send(Buffer.concat([encodeFrame(FRAME_TYPE.heartbeat), encodeFrame(FRAME_TYPE.data, Buffer.from("ok\r")), encodeWindowSize(90, 20)]));
      raw.ws.send("text messages are ignored");
      // Each message is one frame: the terminal's bytes are the data frames' payloads.
      const output = (): string => Buffer.concat(raw.messages.filter((m) => m[0] === FRAME_TYPE.data).map((m) => m.subarray(5))).toString("utf8");
      await until(() => (/\r\nsplit-ok\r\n/.test(output()) ? true : undefined), "the joined command's output");
      raw.ws.send(encodeFrame(FRAME_TYPE.data, Buffer.from("stty size; exit\r")));
      assert.deepEqual(await raw.closed, { code: 1000, reason: "Shell exited with code 0" });
      assert.match(output(), /\r\n20 90\r\n/);
    });

    test("uid, gid and cwd choose the user and the directory", async () => {
      const session = await client.shell(hostname, { uid: 65534, gid: 65534, cwd: "/tmp" });
      const out = watch(session);
      session.write("echo id=$(id -u):$(id -g) groups=$(id -G) pwd=$(pwd); exit\r");
      await out.waitFor(/id=65534:65534 groups=65534 pwd=\/tmp/);
      assert.equal((await session.exit).code, 0);
      // A directory named in characters beyond Latin-1 arrives intact.
      await guest("mkdir -p \"/tmp/$(printf '\\346\\227\\245\\346\\234\\254')\"");
      const unicode = await client.shell(hostname, { cwd: "/tmp/日本" });
      const where = watch(unicode);
      unicode.write("pwd; exit\r");
      await where.waitFor(/\r\n\/tmp\/日本\r\n/);
      assert.equal((await unicode.exit).code, 0);
    });

    test("an idle shell costs the agent no CPU (no polling)", async () => {
      const session = await client.shell(hostname);
      await sleep(500);
      // Measured inside the guest while nothing else talks to the agent: its CPU ticks over 3 s.
      const ticks = (
        await guest("p=$(pgrep -f '^/opt/corral/bin/node /opt/corral/agent.mjs'); a=$(cut -d' ' -f14,15 /proc/$p/stat); sleep 3; b=$(cut -d' ' -f14,15 /proc/$p/stat); echo $a $b")
      )
        .trim()
        .split(" ")
        .map(Number);
      assert.equal(ticks.length, 4, "the agent's process was found");
      const used = (ticks[2] as number) + (ticks[3] as number) - (ticks[0] as number) - (ticks[1] as number);
      assert.ok(used <= 3, `the agent used ${used} ticks (10 ms each) in 3 s with an idle shell open`);
      session.close();
      await session.exit;
    });

    test("bad requests are refused before the upgrade, with the reason", async () => {
      const refusals: Array<[string, number, string, RegExp]> = [
        [`/vm/${hostname}/shell?shell=/bin/bash`, 400, "invalid_request", /Shell "\/bin\/bash" does not exist in the guest/],
        [`/vm/${hostname}/shell?cwd=/no/such/dir`, 400, "invalid_request", /Working directory "\/no\/such\/dir" does not exist/],
        [`/vm/${hostname}/shell?uid=abc`, 400, "invalid_request", /query parameter "uid"/],
        [`/vm/${hostname}/shell?uid=-1`, 400, "invalid_request", /query parameter "uid"/],
        ["/vm/nope-1/shell", 404, "vm_not_found", /"nope-1"/],
        ["/vm/Bad_Name/shell", 400, "invalid_name", /hostname/],
      ];
      for (const [path, status, code, message] of refusals) {
        const refusal = await openRefused(tcp, path);
        assert.equal(refusal.status, status, `${path}: ${JSON.stringify(refusal.body)}`);
        assert.equal(refusal.body.code, code, path);
        assert.match(refusal.body.error, message, path);
      }
      await assert.rejects(client.shell(hostname, { shell: "/bin/bash" }), (err: unknown) => err instanceof CorralApiError && err.status === 400);
      // A plain GET is told it needs an upgrade.
      const plain = await fetch(`${daemon.url}/vm/${hostname}/shell`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(plain.status, 426);
      assert.deepEqual(await plain.json(), {
        error: 'GET /vm/HOST/shell is a WebSocket: send the request with "Connection: Upgrade" and "Upgrade: websocket"',
        code: "upgrade_required",
      });
    });
  });

  describe("forward", () => {
    test("bytes round trip through a forwarded connection to an echo server in the guest", async () => {
      const conn = await client.forward(hostname, "127.0.0.1:7000");
      const payload = randomBytes(1024 * 1024);
      const echoed = readBytes(conn, payload.length);
      conn.write(payload);
      assert.ok((await echoed).equals(payload), "1 MiB comes back byte for byte");
      conn.destroy();
    });

    test("20 concurrent connections, each with its own payload, all come back right", async () => {
      const results = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          const conn = await client.forward(hostname, "127.0.0.1:7000");
          const payload = Buffer.concat([Buffer.from(`connection ${i}:`), randomBytes(64 * 1024 + i * 997)]);
          const echoed = readBytes(conn, payload.length);
          conn.write(payload);
          const same = (await echoed).equals(payload);
          conn.destroy();
          return same;
        }),
      );
      assert.deepEqual(results, Array(20).fill(true));
    });

    test("a unix socket in the guest is a target too", async () => {
      const conn = await client.forward(hostname, "unix:/tmp/echo.sock");
      const echoed = readBytes(conn, 5);
      conn.write("hello");
      assert.equal((await echoed).toString(), "hello");
      conn.destroy();
    });

    test("a closed port: the WebSocket opens and closes at once with code 1014 and the reason", async () => {
      const raw = await openAccepted(tcp, `/vm/${hostname}/forward`, { "x-inlets-upstream": "127.0.0.1:9" });
      assert.deepEqual(await raw.closed, { code: 1014, reason: "Cannot connect to 127.0.0.1:9 in the guest: connection refused" });
      const conn = await client.forward(hostname, "127.0.0.1:9");
      const error = await new Promise<Error>((resolve) => conn.once("error", resolve));
      assert.ok(error instanceof ForwardClosedError);
      assert.equal(error.closeCode, 1014);
      assert.match(error.message, /connection refused/);
      const missing = await openAccepted(tcp, `/vm/${hostname}/forward`, { "x-inlets-upstream": "unix:/no/such.sock" });
      assert.deepEqual(await missing.closed, { code: 1014, reason: "Cannot connect to unix:/no/such.sock in the guest: no such socket" });
    });

    test("a missing or malformed X-Inlets-Upstream is a 400 before the upgrade", async () => {
      const cases: Array<[Record<string, string>, RegExp]> = [
        [{}, /Missing header "X-Inlets-Upstream"/],
        [{ "x-inlets-upstream": "8080" }, /Invalid header "X-Inlets-Upstream": "8080" is not an address/],
        [{ "x-inlets-upstream": "127.0.0.1:0" }, /invalid port "0"/],
        [{ "x-inlets-upstream": "unix:relative.sock" }, /not an absolute socket path/],
      ];
      for (const [headers, message] of cases) {
        const refusal = await openRefused(tcp, `/vm/${hostname}/forward`, headers);
        assert.equal(refusal.status, 400, JSON.stringify(refusal.body));
        assert.equal(refusal.body.code, "invalid_request");
        assert.match(refusal.body.error, message);
      }
      const unknown = await openRefused(tcp, "/vm/nope-1/forward", { "x-inlets-upstream": "127.0.0.1:80" });
      assert.deepEqual([unknown.status, unknown.body.code], [404, "vm_not_found"]);
    });

    test("a paused VM answers 409 to shell and forward; resumed, both work again", async () => {
      await (await client.transport.send("POST", `/vm/${hostname}/pause`, {})).body.dump();
      try {
        const shell = await openRefused(tcp, `/vm/${hostname}/shell`);
        assert.deepEqual([shell.status, shell.body.code], [409, "vm_paused"]);
        const forward = await openRefused(tcp, `/vm/${hostname}/forward`, { "x-inlets-upstream": "127.0.0.1:7000" });
        assert.deepEqual([forward.status, forward.body.code], [409, "vm_paused"]);
      } finally {
        await (await client.transport.send("POST", `/vm/${hostname}/resume`, {})).body.dump();
      }
      const conn = await client.forward(hostname, "127.0.0.1:7000");
      const echoed = readBytes(conn, 4);
      conn.write("back");
      assert.equal((await echoed).toString(), "back");
      conn.destroy();
    });
  });

  describe("transport and auth", () => {
    test("shell and forward work over the daemon's unix socket", async () => {
      const overSocket = new CorralClient({ url: socketPath, token });
      try {
        const session = await overSocket.shell(hostname);
        const out = watch(session);
        session.write("echo via-socket; exit 4\r");
        await out.waitFor(/\r\nvia-socket\r\n/);
        assert.equal((await session.exit).code, 4);
        const conn = await overSocket.forward(hostname, "127.0.0.1:7000");
        const echoed = readBytes(conn, 11);
        conn.write("over socket");
        assert.equal((await echoed).toString(), "over socket");
        conn.destroy();
        const refusal = await openRefused({ url: socketPath, token }, "/vm/nope-1/shell");
        assert.equal(refusal.status, 404);
      } finally {
        await overSocket.close();
      }
    });

    test("401 without a token or with a wrong one, before anything else", async () => {
      for (const target of [{ url: daemon.url }, { url: daemon.url, token: "wrong" }, { url: socketPath }]) {
        const shell = await openRefused(target, `/vm/${hostname}/shell`);
        assert.deepEqual([shell.status, shell.body.code], [401, "unauthorized"]);
        const forward = await openRefused(target, `/vm/${hostname}/forward`, { "x-inlets-upstream": "127.0.0.1:7000" });
        assert.deepEqual([forward.status, forward.body.code], [401, "unauthorized"]);
      }
      // Upgrade requests to routes that are not WebSockets get their HTTP answer (and their socket closed).
      const notWebSocket = await openRefused(tcp, "/nodes");
      assert.equal(notWebSocket.status, 200);
      assert.equal((await openRefused({ url: socketPath, token }, "/no/such/route")).status, 404);
      const anonymous = new CorralClient({ url: daemon.url });
      await assert.rejects(anonymous.shell(hostname), (err: unknown) => err instanceof CorralApiError && err.status === 401 && err.code === "unauthorized");
      await assert.rejects(anonymous.forward(hostname, "127.0.0.1:7000"), (err: unknown) => err instanceof CorralApiError && err.status === 401);
      await anonymous.close();
    });
  });

  describe("CLI", () => {
    test("vm shell with piped input types it, and exits with the shell's code", async () => {
      const cli = startCli(["vm", "shell", hostname], cliEnv, "echo piped-$((6*7))\nexit 5\n");
      assert.equal(await cli.exited, 5, cli.stderr());
      assert.match(cli.stdout(), /piped-42/);
      const ended = startCli(["vm", "shell", hostname], cliEnv, "echo eof-ends-it\n");
      assert.equal(await ended.exited, 0, ended.stderr());
      assert.match(ended.stdout(), /\r\neof-ends-it\r\n/);
      // The end of input arrives while a command still runs (the pty in canonical mode): it still ends it.
      const busy = startCli(["vm", "shell", hostname], cliEnv, "sleep 1; echo slept\n");
      assert.equal(await busy.exited, 0, busy.stderr());
      assert.match(busy.stdout(), /\r\nslept\r\n/);
    });

    test("vm shell refusals are one line and exit code 1", async () => {
      const missing = startCli(["vm", "shell", "nope-1"], cliEnv, "");
      assert.equal(await missing.exited, 1);
      assert.match(missing.stderr(), /^corral: VM "nope-1" does not exist \(404 vm_not_found\)\n$/);
    });

    test("vm forward listens, forwards each connection, and stops on Ctrl-C", async () => {
      const cli = startCli(["vm", "forward", hostname, "-L", "0:127.0.0.1:7000", "-L", "0:unix:/tmp/echo.sock"], cliEnv);
      try {
        const lines = await until(() => {
          const found = [...cli.stdout().matchAll(/^Forwarding 127\.0\.0\.1:(\d+) -> (\S+) in \S+$/gm)];
          return found.length === 2 ? found : undefined;
        }, "the forward to listen");
        for (const [, port, target] of lines) {
          const socket = connect(Number(port), "127.0.0.1");
          const echoed = readBytes(socket, 8);
          socket.write("via-cli!");
          assert.equal((await echoed).toString(), "via-cli!", target);
          socket.destroy();
        }
      } finally {
        cli.child.kill("SIGINT");
      }
      assert.equal(await cli.exited, 0, cli.stderr());
    });

    test("vm forward refuses bad specs and unknown VMs with a clear message", async () => {
      const bad = startCli(["vm", "forward", hostname, "-L", "http:80:1"], cliEnv);
      assert.equal(await bad.exited, 1);
      assert.match(bad.stderr(), /Invalid forward "http:80:1": the local port "http" is not a number/);
      const unknown = startCli(["vm", "forward", "nope-1", "-L", "0:80"], cliEnv);
      assert.equal(await unknown.exited, 1);
      assert.match(unknown.stderr(), /VM "nope-1" does not exist/);
    });

    test("SSH end to end: ssh through `corral vm forward` to the guest's dropbear with the VM's key", async () => {
      const cli = startCli(["vm", "forward", hostname, "-L", "0:127.0.0.1:22"], cliEnv);
      try {
        const port = await until(() => /^Forwarding 127\.0\.0\.1:(\d+) /m.exec(cli.stdout())?.[1], "the forward to listen");
        const { stdout } = await run(
          "ssh",
          [
            "-i",
            join(keyDir, "id"),
            "-p",
            port,
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=60",
            "-o",
            "LogLevel=ERROR",
            "root@127.0.0.1",
            "echo ok",
          ],
          { timeout: 120_000 },
        );
        assert.equal(stdout, "ok\n");
      } finally {
        cli.child.kill("SIGINT");
      }
      assert.equal(await cli.exited, 0, cli.stderr());
    });
  });

  // Last: it stops the daemon.
  test("stopping the daemon closes open shells and forwards with 1001", async () => {
    const shell = await openAccepted(tcp, `/vm/${hostname}/shell`);
    const forward = await openAccepted({ url: socketPath, token }, `/vm/${hostname}/forward`, { "x-inlets-upstream": "127.0.0.1:7000" });
    // Refused upgrades earlier in this suite must not hold the stop up (their sockets are closed).
    const started = performance.now();
    assert.equal(await daemon.stop(), 0);
    assert.ok(performance.now() - started < 30_000, "the daemon stopped promptly");
    assert.deepEqual(await shell.closed, { code: 1001, reason: "The daemon is shutting down" });
    assert.deepEqual(await forward.closed, { code: 1001, reason: "The daemon is shutting down" });
  });
});
