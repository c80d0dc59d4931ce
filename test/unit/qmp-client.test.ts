import { test, describe, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { QmpClient, QmpError, type QmpEvent } from "../../src/engine/qemu/qmp-client.ts";

const GREETING = { QMP: { version: { qemu: { micro: 0, minor: 2, major: 8 }, package: "" }, capabilities: [] } };

const dir = await mkdtemp(join(tmpdir(), "corral-qmp-test-"));
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let socketCount = 0;

// Everything a test opened is closed after it, even when an assertion failed half-way.
const openFakes = new Set<FakeQmp>();
const openClients = new Set<QmpClient>();
afterEach(async () => {
  for (const client of openClients) client.close();
  openClients.clear();
  for (const fake of openFakes) await fake.close();
  openFakes.clear();
});

/** QmpClient.connect, remembering the client for clean-up. */
async function connectClient(path: string, options?: Parameters<typeof QmpClient.connect>[1]): Promise<QmpClient> {
  const client = await QmpClient.connect(path, options);
  openClients.add(client);
  return client;
}

interface Command {
  execute: string;
  id: string;
  arguments?: Record<string, unknown>;
}

type Handler = (command: Command, conn: FakeConnection) => void;

/** One client connection as the fake QEMU sees it. */
class FakeConnection {
  readonly commands: Command[] = [];
  readonly rawLines: string[] = [];
  closed = false;
  private buffer = "";
  private readonly waiters: Array<() => void> = [];

  constructor(
    readonly socket: Socket,
    private readonly handler: Handler,
  ) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      for (let end = this.buffer.indexOf("\n"); end >= 0; end = this.buffer.indexOf("\n")) {
        const line = this.buffer.slice(0, end);
        this.buffer = this.buffer.slice(end + 1);
        this.rawLines.push(line);
        const command = JSON.parse(line) as Command;
        this.commands.push(command);
        this.handler(command, this);
        for (const wake of this.waiters.splice(0)) wake();
      }
    });
    socket.on("error", () => undefined);
    socket.on("close", () => {
      this.closed = true;
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  send(message: unknown): void {
    this.socket.write(`${JSON.stringify(message)}\n`);
  }

  reply(command: Command, value: unknown = {}): void {
    this.send({ return: value, id: command.id });
  }

  /** Resolves once `count` commands have arrived (or the connection closed). */
  async waitForCommands(count: number): Promise<void> {
    while (this.commands.length < count && !this.closed) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  async waitForClose(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (!this.closed && performance.now() < deadline) await sleep(5);
    return this.closed;
  }
}

interface FakeQmp {
  path: string;
  server: Server;
  /** Resolves with the first connection. */
  connection: Promise<FakeConnection>;
  close(): Promise<void>;
}

/** A QEMU stand-in: greets (unless told not to), answers qmp_capabilities, and passes the rest to `handler`. */
async function fakeQmp(handler: Handler = () => undefined, options: { greet?: boolean; capabilities?: Handler } = {}): Promise<FakeQmp> {
  const path = join(dir, `qmp-${++socketCount}.sock`);
  const sockets = new Set<Socket>();
  let resolveConnection!: (conn: FakeConnection) => void;
  const connection = new Promise<FakeConnection>((resolve) => {
    resolveConnection = resolve;
  });
  const server = createServer((socket) => {
    sockets.add(socket);
    const conn = new FakeConnection(socket, (command, c) => {
      if (command.execute === "qmp_capabilities") return (options.capabilities ?? ((cmd, cc) => cc.reply(cmd)))(command, c);
      handler(command, c);
    });
    if (options.greet !== false) conn.send(GREETING);
    resolveConnection(conn);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  let closing: Promise<void> | undefined;
  const fake: FakeQmp = {
    path,
    server,
    connection,
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

async function withClient<T>(
  handler: Handler,
  body: (client: QmpClient, conn: FakeConnection, fake: FakeQmp) => Promise<T>,
  options: { timeoutMs?: number; transcript?: string } = {},
): Promise<T> {
  const fake = await fakeQmp(handler);
  const client = await connectClient(fake.path, options);
  try {
    return await body(client, await fake.connection, fake);
  } finally {
    client.close();
    await fake.close();
  }
}

describe("QmpClient.connect", { timeout: 20_000 }, () => {
  test("waits for the greeting before negotiating capabilities, then sends exactly qmp_capabilities", async () => {
    const fake = await fakeQmp(() => undefined, { greet: false });
    const connecting = connectClient(fake.path);
    const conn = await fake.connection;
    await sleep(30);
    assert.deepEqual(conn.rawLines, [], "nothing may be sent before the greeting");
    conn.send(GREETING);
    const client = await connecting;
    assert.deepEqual(conn.rawLines, ['{"execute":"qmp_capabilities","id":"c1"}']);
    assert.equal(client.isClosed, false);
    client.close();
    await fake.close();
  });

  test("does not resolve before the qmp_capabilities reply", async () => {
    let capabilities: Command | undefined;
    const fake = await fakeQmp(() => undefined, {
      capabilities: (cmd) => {
        capabilities = cmd;
      },
    });
    let connected = false;
    const connecting = connectClient(fake.path).then((c) => {
      connected = true;
      return c;
    });
    const conn = await fake.connection;
    await conn.waitForCommands(1);
    await sleep(20);
    assert.equal(connected, false);
    assert.ok(capabilities);
    conn.reply(capabilities);
    const client = await connecting;
    assert.equal(connected, true);
    client.close();
    await fake.close();
  });

  test("rejects with QmpError when the socket does not exist", async () => {
    const path = join(dir, "missing.sock");
    await assert.rejects(connectClient(path), (err: unknown) => {
      assert.ok(err instanceof QmpError);
      assert.equal(err.name, "QmpError");
      assert.match(err.message, new RegExp(`^Cannot connect to QMP at ${path.replaceAll(".", "\\.")}: connect ENOENT`));
      assert.equal((err.cause as NodeJS.ErrnoException).code, "ENOENT");
      assert.equal(err.qmpClass, undefined);
      return true;
    });
  });

  test("rejects with QmpError when the greeting does not arrive in time", async () => {
    const fake = await fakeQmp(() => undefined, { greet: false });
    const started = performance.now();
    await assert.rejects(connectClient(fake.path, { timeoutMs: 80 }), (err: unknown) => {
      assert.ok(err instanceof QmpError);
      assert.equal(err.message, "QMP greeting did not arrive in 80 ms");
      return true;
    });
    assert.ok(performance.now() - started < 1000);
    await fake.close();
  });

  // QEMU serves one QMP client at a time: a failed connect that kept its socket would block the next one.
  test("closes its socket when the greeting times out", async () => {
    const fake = await fakeQmp(() => undefined, { greet: false });
    await assert.rejects(connectClient(fake.path, { timeoutMs: 50 }), QmpError);
    const conn = await fake.connection;
    assert.equal(await conn.waitForClose(300), true, "the server still holds an open connection from the failed connect");
  });

  test("rejects when qmp_capabilities fails, with the QMP class, and closes its socket", async () => {
    const fake = await fakeQmp(() => undefined, {
      capabilities: (cmd, c) => c.send({ error: { class: "CommandNotFound", desc: "nope" }, id: cmd.id }),
    });
    await assert.rejects(connectClient(fake.path), (err: unknown) => {
      assert.ok(err instanceof QmpError);
      assert.equal(err.message, 'QMP command "qmp_capabilities" failed: nope');
      assert.equal(err.qmpClass, "CommandNotFound");
      return true;
    });
    assert.equal(await (await fake.connection).waitForClose(300), true);
  });

  test("rejects when the server hangs up before greeting", async () => {
    const fake = await fakeQmp(() => undefined, { greet: false });
    const connecting = connectClient(fake.path, { timeoutMs: 2000 });
    const conn = await fake.connection;
    conn.socket.end();
    await assert.rejects(connecting, (err: unknown) => {
      assert.ok(err instanceof QmpError);
      assert.equal(err.message, 'QMP connection closed before "greeting" was answered');
      return true;
    });
    await fake.close();
  });

  test("an abort while waiting for the greeting rejects at once and closes the socket", async () => {
    const fake = await fakeQmp(() => undefined, { greet: false });
    const controller = new AbortController();
    const connecting = connectClient(fake.path, { timeoutMs: 2000, signal: controller.signal });
    const conn = await fake.connection;
    const started = performance.now();
    controller.abort();
    await assert.rejects(connecting, (err: unknown) => {
      assert.ok(err instanceof QmpError);
      assert.equal(err.message, `Connecting to QMP at ${fake.path} was aborted`);
      return true;
    });
    assert.ok(performance.now() - started < 500);
    assert.equal(await conn.waitForClose(300), true);
  });

  test("an abort while negotiating capabilities rejects and closes the socket", async () => {
    const fake = await fakeQmp(() => undefined, { capabilities: () => undefined });
    const controller = new AbortController();
    const connecting = connectClient(fake.path, { timeoutMs: 2000, signal: controller.signal });
    const conn = await fake.connection;
    await conn.waitForCommands(1);
    controller.abort();
    await assert.rejects(connecting, { name: "QmpError", message: `Connecting to QMP at ${fake.path} was aborted` });
    assert.equal(await conn.waitForClose(300), true);
  });

  test("an already aborted signal rejects without connecting", async () => {
    const fake = await fakeQmp();
    let connected = false;
    void fake.connection.then(() => {
      connected = true;
    });
    await assert.rejects(connectClient(fake.path, { signal: AbortSignal.abort() }), {
      name: "QmpError",
      message: `Connecting to QMP at ${fake.path} was aborted`,
    });
    await sleep(20);
    assert.equal(connected, false);
  });

  test("an abort after connecting does not affect the client", async () => {
    const controller = new AbortController();
    const fake = await fakeQmp((cmd, c) => c.reply(cmd, "still here"));
    const client = await connectClient(fake.path, { signal: controller.signal });
    controller.abort();
    assert.equal(await client.execute("x"), "still here");
    assert.equal(client.isClosed, false);
  });
});

describe("QmpClient typed commands", { timeout: 20_000 }, () => {
  test("each typed method sends its own execute name with a fresh id and no arguments", async () => {
    await withClient(
      (cmd, c) => c.reply(cmd, cmd.execute === "query-status" ? { running: true, singlestep: false, status: "running" } : {}),
      async (client, conn) => {
        assert.deepEqual(await client.queryStatus(), { running: true, singlestep: false, status: "running" });
        assert.equal(await client.stop(), undefined);
        assert.equal(await client.cont(), undefined);
        assert.equal(await client.systemPowerdown(), undefined);
        assert.equal(await client.systemReset(), undefined);
        assert.equal(await client.quit(), undefined);
        assert.deepEqual(conn.rawLines, [
          '{"execute":"qmp_capabilities","id":"c1"}',
          '{"execute":"query-status","id":"c2"}',
          '{"execute":"stop","id":"c3"}',
          '{"execute":"cont","id":"c4"}',
          '{"execute":"system_powerdown","id":"c5"}',
          '{"execute":"system_reset","id":"c6"}',
          '{"execute":"quit","id":"c7"}',
        ]);
      },
    );
  });

  test("execute passes arguments and resolves with the return value", async () => {
    await withClient(
      (cmd, c) => c.reply(cmd, { echoed: cmd.arguments }),
      async (client, conn) => {
        const result = await client.execute("migrate", { uri: "exec:cat > /dev/null" });
        assert.deepEqual(result, { echoed: { uri: "exec:cat > /dev/null" } });
        assert.equal(conn.rawLines[1], '{"execute":"migrate","arguments":{"uri":"exec:cat > /dev/null"},"id":"c2"}');
      },
    );
  });

  test("matches replies to commands by id when they come back out of order", async () => {
    const held: Command[] = [];
    await withClient(
      (cmd, c) => {
        held.push(cmd);
        if (held.length === 3) {
          // Answer in reverse order, all in one write.
          c.socket.write(
            held
              .map((h) => `${JSON.stringify({ return: { answer: h.execute }, id: h.id })}\n`)
              .reverse()
              .join(""),
          );
        }
      },
      async (client) => {
        const results = await Promise.all([client.execute("first"), client.execute("second"), client.execute("third")]);
        assert.deepEqual(results, [{ answer: "first" }, { answer: "second" }, { answer: "third" }]);
      },
    );
  });

  test("an error reply rejects with QmpError carrying the class and description", async () => {
    await withClient(
      (cmd, c) => c.send({ error: { class: "GenericError", desc: "Guest is not running" }, id: cmd.id }),
      async (client) => {
        await assert.rejects(client.cont(), (err: unknown) => {
          assert.ok(err instanceof QmpError);
          assert.equal(err.name, "QmpError");
          assert.equal(err.qmpClass, "GenericError");
          assert.equal(err.message, 'QMP command "cont" failed: Guest is not running');
          return true;
        });
      },
    );
  });

  test("an error reply without a description still names the command", async () => {
    await withClient(
      (cmd, c) => c.send({ error: {}, id: cmd.id }),
      async (client) => {
        await assert.rejects(client.stop(), (err: unknown) => {
          assert.ok(err instanceof QmpError);
          assert.equal(err.message, 'QMP command "stop" failed: unknown error');
          assert.equal(err.qmpClass, undefined);
          return true;
        });
      },
    );
  });

  test("an error for one command leaves the connection usable", async () => {
    await withClient(
      (cmd, c) => (cmd.execute === "bad" ? c.send({ error: { class: "CommandNotFound", desc: "The command bad has not been found" }, id: cmd.id }) : c.reply(cmd, 42)),
      async (client) => {
        await assert.rejects(client.execute("bad"), { name: "QmpError", qmpClass: "CommandNotFound" });
        assert.equal(await client.execute("good"), 42);
        assert.equal(client.isClosed, false);
      },
    );
  });
});

describe("QmpClient events", { timeout: 20_000 }, () => {
  test("events go to the event listener and are not taken for replies", async () => {
    await withClient(
      (cmd, c) => {
        c.send({ event: "STOP", timestamp: { seconds: 1, microseconds: 2 } });
        // An event carrying the command's id (never sent by QEMU) must still be an event.
        c.send({ event: "RESUME", data: { reason: "x" }, id: cmd.id });
        setTimeout(() => c.reply(cmd, { status: "paused", running: false }), 20);
      },
      async (client) => {
        const events: QmpEvent[] = [];
        client.on("event", (e) => events.push(e));
        const status = await client.queryStatus();
        assert.deepEqual(status, { status: "paused", running: false });
        assert.deepEqual(events, [
          { event: "STOP", timestamp: { seconds: 1, microseconds: 2 } },
          { event: "RESUME", data: { reason: "x" }, id: "c2" },
        ]);
      },
    );
  });

  test("unsolicited events arrive while no command is pending", async () => {
    await withClient(
      () => undefined,
      async (client, conn) => {
        const got = new Promise<QmpEvent>((resolve) => client.once("event", resolve));
        conn.send({ event: "SHUTDOWN", data: { guest: true, reason: "guest-shutdown" } });
        assert.deepEqual(await got, { event: "SHUTDOWN", data: { guest: true, reason: "guest-shutdown" } });
      },
    );
  });

  test("replies with unknown ids, replies without ids and non-JSON lines are ignored", async () => {
    await withClient(
      (cmd, c) => {
        c.socket.write(`not json at all\n${JSON.stringify({ return: "stray", id: "c999" })}\n${JSON.stringify({ return: "no id" })}\n\n  \n`);
        setTimeout(() => c.reply(cmd, "mine"), 10);
      },
      async (client) => {
        assert.equal(await client.execute("anything"), "mine");
      },
    );
  });
});

describe("QmpClient framing", { timeout: 20_000 }, () => {
  test("a reply split across several chunks is reassembled", async () => {
    await withClient(
      (cmd, c) => {
        const line = `${JSON.stringify({ return: { status: "running", running: true }, id: cmd.id })}\n`;
        const pieces = [line.slice(0, 3), line.slice(3, 17), line.slice(17, -1), line.slice(-1)];
        void (async () => {
          for (const piece of pieces) {
            c.socket.write(piece);
            await sleep(5);
          }
        })();
      },
      async (client) => {
        assert.deepEqual(await client.queryStatus(), { status: "running", running: true });
      },
    );
  });

  test("a multi-byte UTF-8 character split between chunks is not corrupted", async () => {
    await withClient(
      (cmd, c) => {
        const bytes = Buffer.from(`${JSON.stringify({ error: { class: "GenericError", desc: "déjà vu €" }, id: cmd.id })}\r\n`, "utf8");
        const euro = bytes.indexOf(Buffer.from("€", "utf8"));
        void (async () => {
          c.socket.write(bytes.subarray(0, euro + 1));
          await sleep(10);
          c.socket.write(bytes.subarray(euro + 1));
        })();
      },
      async (client) => {
        await assert.rejects(client.stop(), { message: 'QMP command "stop" failed: déjà vu €' });
      },
    );
  });

  test("several messages in one chunk are all handled, in order", async () => {
    await withClient(
      (cmd, c) => {
        if (cmd.execute !== "second") return;
        const first = c.commands.find((x) => x.execute === "first") as Command;
        c.socket.write([{ event: "A" }, { return: 1, id: first.id }, { event: "B" }, { return: 2, id: cmd.id }, { event: "C" }].map((m) => `${JSON.stringify(m)}\n`).join(""));
      },
      async (client) => {
        const order: string[] = [];
        client.on("event", (e) => order.push(`event ${e.event}`));
        const a = client.execute("first").then((v) => order.push(`reply ${String(v)}`));
        const b = client.execute("second").then((v) => order.push(`reply ${String(v)}`));
        await Promise.all([a, b]);
        await sleep(5);
        assert.deepEqual(order, ["event A", "event B", "event C", "reply 1", "reply 2"]);
      },
    );
  });
});

describe("QmpClient timeouts and closing", { timeout: 20_000 }, () => {
  test("a command with no answer rejects with QmpError after its deadline; a late answer is ignored", async () => {
    const unanswered: Command[] = [];
    await withClient(
      (cmd, c) => (cmd.execute === "stop" ? unanswered.push(cmd) : c.reply(cmd, "ok")),
      async (client, conn) => {
        const started = performance.now();
        await assert.rejects(client.stop(), (err: unknown) => {
          assert.ok(err instanceof QmpError);
          assert.equal(err.message, 'QMP command "stop" got no answer in 60 ms');
          return true;
        });
        const elapsed = performance.now() - started;
        assert.ok(elapsed >= 55 && elapsed < 1000, `timed out after ${elapsed} ms`);
        conn.reply(unanswered[0] as Command, "too late");
        assert.equal(await client.execute("cont"), "ok");
      },
      { timeoutMs: 60 },
    );
  });

  test("execute's own timeout overrides the connection's", async () => {
    await withClient(
      () => undefined,
      async (client) => {
        await assert.rejects(client.execute("slow", undefined, 25), { name: "QmpError", message: 'QMP command "slow" got no answer in 25 ms' });
      },
      { timeoutMs: 5000 },
    );
  });

  test("the server closing rejects every pending command and emits close once", async () => {
    await withClient(
      (_cmd, c) => {
        if (c.commands.length === 3) c.socket.destroy();
      },
      async (client) => {
        let closes = 0;
        client.on("close", () => closes++);
        const results = await Promise.allSettled([client.stop(), client.queryStatus()]);
        assert.deepEqual(
          results.map((r) => (r.status === "rejected" ? [(r.reason as Error).constructor, (r.reason as Error).message] : r.status)),
          [
            [QmpError, 'QMP connection closed before "stop" was answered'],
            [QmpError, 'QMP connection closed before "query-status" was answered'],
          ],
        );
        await sleep(10);
        assert.equal(closes, 1);
        assert.equal(client.isClosed, true);
        await assert.rejects(client.cont(), { name: "QmpError", message: 'Cannot run QMP command "cont": the connection is closed' });
      },
    );
  });

  test("close() rejects pending commands and emits close", async () => {
    await withClient(
      () => undefined,
      async (client, conn) => {
        const closed = new Promise<void>((resolve) => client.once("close", resolve));
        const pending = client.systemPowerdown();
        await conn.waitForCommands(2);
        client.close();
        await assert.rejects(pending, { name: "QmpError", message: 'QMP connection closed before "system_powerdown" was answered' });
        await closed;
        assert.equal(client.isClosed, true);
        assert.equal(await conn.waitForClose(1000), true);
      },
    );
  });

  test("quit() succeeds when QEMU exits without answering", async () => {
    await withClient(
      (cmd, c) => {
        if (cmd.execute === "quit") c.socket.destroy();
      },
      async (client) => {
        await client.quit();
        assert.equal(client.isClosed, true);
      },
    );
  });

  test("quit() still reports an error reply while the connection is open", async () => {
    await withClient(
      (cmd, c) => c.send({ error: { class: "GenericError", desc: "no" }, id: cmd.id }),
      async (client) => {
        await assert.rejects(client.quit(), { name: "QmpError", message: 'QMP command "quit" failed: no' });
      },
    );
  });

  test("quit() still reports a timeout while the connection is open", async () => {
    await withClient(
      () => undefined,
      async (client) => {
        await assert.rejects(client.quit(), { name: "QmpError", message: 'QMP command "quit" got no answer in 40 ms' });
      },
      { timeoutMs: 40 },
    );
  });
});

describe("QmpClient transcript", { timeout: 20_000 }, () => {
  test("records one line per message with direction markers, then the close", async () => {
    const transcript = join(dir, `transcript-${++socketCount}.log`);
    const fake = await fakeQmp((cmd, c) => {
      c.send({ event: "STOP" });
      c.reply(cmd, { status: "paused", running: false });
    });
    const client = await connectClient(fake.path, { transcript });
    await client.queryStatus();
    const conn = await fake.connection;
    conn.socket.destroy();
    await new Promise<void>((resolve) => client.once("close", resolve));
    await fake.close();

    let text = "";
    const deadline = performance.now() + 2000;
    while (!text.includes("connection closed") && performance.now() < deadline) {
      await sleep(5);
      text = await readFile(transcript, "utf8").catch(() => "");
    }
    const lines = text.split("\n");
    assert.equal(lines.pop(), "", "the transcript ends with a newline");
    for (const line of lines) assert.match(line, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [<>-] /);
    assert.deepEqual(
      lines.map((l) => l.slice(25)),
      [
        `< ${JSON.stringify(GREETING)}`,
        '> {"execute":"qmp_capabilities","id":"c1"}',
        '< {"return":{},"id":"c1"}',
        '> {"execute":"query-status","id":"c2"}',
        '< {"event":"STOP"}',
        '< {"return":{"status":"paused","running":false},"id":"c2"}',
        "- connection closed",
      ],
    );
  });

  test("an unwritable transcript does not break the client", async () => {
    const transcript = join(dir, "no-such-folder", "qmp.log");
    await withClient(
      (cmd, c) => c.reply(cmd, "fine"),
      async (client) => {
        assert.equal(await client.execute("x"), "fine");
      },
      { transcript },
    );
  });
});
