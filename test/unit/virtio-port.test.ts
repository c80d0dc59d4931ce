import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { AGENT_VERSION } from "../../src/protocol/agent.ts";
import { findPortDevice, parseHello } from "../../src/guest/virtio-port.ts";
import { buildGuestNative } from "../../src/image/guest-native.ts";

const dir = await mkdtemp(join(tmpdir(), "corral-vport-test-"));
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

// The agent's native addon, built as the image builder builds it, so the same tests cover the port relay.
async function nativeAddon(): Promise<string | undefined> {
  try {
    return await buildGuestNative(join(dir, "native"));
  } catch {
    return undefined;
  }
}
// Built before any test is registered: the file's tests must not start (and end) while this awaits.
const addon = await nativeAddon();

describe("parseHello", { timeout: 20_000 }, () => {
  test("accepts nonces of 16 to 64 letters and digits", () => {
    const n16 = `${"aB3".repeat(5)}z`;
    const n64 = "0123456789abcdefABCDEF".repeat(3).slice(0, 64);
    assert.equal(n16.length, 16);
    assert.equal(n64.length, 64);
    assert.equal(parseHello(`CORRAL-HELLO ${n16}`), n16);
    assert.equal(parseHello(`CORRAL-HELLO ${n64}`), n64);
    assert.equal(parseHello("CORRAL-HELLO 0123456789abcdef0123456789abcdef"), "0123456789abcdef0123456789abcdef");
  });

  test("rejects nonces that are too short or too long", () => {
    assert.equal(parseHello(`CORRAL-HELLO ${"a".repeat(15)}`), undefined);
    assert.equal(parseHello(`CORRAL-HELLO ${"a".repeat(65)}`), undefined);
    assert.equal(parseHello("CORRAL-HELLO "), undefined);
    assert.equal(parseHello("CORRAL-HELLO"), undefined);
    assert.equal(parseHello(""), undefined);
  });

  test("rejects nonces with characters outside [A-Za-z0-9]", () => {
    for (const bad of ["0123456789abcde-", "0123456789abcde_", "0123456789abcdé1", "0123456789abcd\u00001", "0123456789abcd\t1"]) {
      assert.equal(parseHello(`CORRAL-HELLO ${bad}`), undefined, JSON.stringify(bad));
    }
  });

  test("rejects any other first word", () => {
    const nonce = "a".repeat(32);
    for (const word of ["CORRAL-READY", "corral-hello", "CORRAL-HELLO:", "XCORRAL-HELLO", "HELLO"]) {
      assert.equal(parseHello(`${word} ${nonce}`), undefined, word);
    }
  });

  test("rejects extra fields and non-space separators", () => {
    const nonce = "a".repeat(32);
    assert.equal(parseHello(`CORRAL-HELLO ${nonce} 0.1.0`), undefined);
    assert.equal(parseHello(`CORRAL-HELLO ${nonce} x`), undefined);
    assert.equal(parseHello(`CORRAL-HELLO  ${nonce}`), undefined, "two spaces leave an empty nonce");
    assert.equal(parseHello(`CORRAL-HELLO\t${nonce}`), undefined);
  });

  test("tolerates surrounding whitespace and a CR from a CRLF line ending", () => {
    const nonce = "Z".repeat(20);
    assert.equal(parseHello(`CORRAL-HELLO ${nonce}\r`), nonce);
    assert.equal(parseHello(`CORRAL-HELLO ${nonce}   `), nonce);
    assert.equal(parseHello(`  CORRAL-HELLO ${nonce}`), nonce);
  });
});

describe("findPortDevice", { timeout: 20_000 }, () => {
  const sys = join(dir, "virtio-ports");
  mkdirSync(join(sys, "vport0p0"), { recursive: true }); // the console port: no name file
  mkdirSync(join(sys, "vport1p1"), { recursive: true });
  writeFileSync(join(sys, "vport1p1", "name"), "org.qemu.guest_agent.0\n");
  mkdirSync(join(sys, "vport1p2"), { recursive: true });
  writeFileSync(join(sys, "vport1p2", "name"), "corral.agent\n");
  mkdirSync(join(sys, "vport1p3"), { recursive: true });
  writeFileSync(join(sys, "vport1p3", "name"), "corral.agent.old\n");

  test("returns /dev/<entry> for the port whose name matches, trimming the newline", () => {
    assert.equal(findPortDevice("corral.agent", sys), "/dev/vport1p2");
    assert.equal(findPortDevice("org.qemu.guest_agent.0", sys), "/dev/vport1p1");
  });

  test("does not match on a prefix and skips ports without a name", () => {
    assert.equal(findPortDevice("corral", sys), undefined);
    assert.equal(findPortDevice("", sys), undefined, "an empty name never matches a port without a name file");
  });

  test("returns undefined when no port matches or the folder is missing", () => {
    assert.equal(findPortDevice("nobody", sys), undefined);
    assert.equal(findPortDevice("corral.agent", join(dir, "no-such-folder")), undefined);
  });
});

// VirtioPort end to end, without a VM: the guest's character device is stood in for by the slave side of a
// pseudo-terminal in raw mode. Like a virtio-serial port, a read on it blocks while the "host" (the master
// side) is connected and returns 0 at once after the host hung up; raw mode passes every byte through. Unlike
// a virtio port, a hung-up pty can never be reconnected, so reconnection after a real disconnect is not
// covered here. The master side is held by a small Python relay (Node cannot open a pty by itself); VirtioPort
// runs in a child process because it has no close(): its read loop would keep this process alive.
const RELAY = `
import os, select, sys, tty
m, s = os.openpty()
tty.setraw(s)
os.write(1, (os.ttyname(s) + "\\n").encode())
os.set_blocking(m, False)
out = bytearray()
stdin_open = True
while stdin_open or out:
    r = [m] + ([0] if stdin_open else [])
    w = [m] if out else []
    rr, ww, _ = select.select(r, w, [])
    if 0 in rr:
        d = os.read(0, 65536)
        if d:
            out += d
        else:
            stdin_open = False
    if m in ww:
        del out[:os.write(m, out)]
    if m in rr:
        try:
            d = os.read(m, 65536)
        except BlockingIOError:
            continue
        view = memoryview(d)
        while view:
            view = view[os.write(1, view):]
os.close(m)
`;

const AGENT = `
const { VirtioPort } = await import(process.env.PORT_MODULE);
const { createRequire } = await import("node:module");
const report = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
const pauseMs = Number(process.env.PAUSE_MS ?? 0);
const native = process.env.NATIVE ? createRequire(import.meta.url)(process.env.NATIVE) : undefined;
let n = 0;
const port = new VirtioPort(process.env.DEVICE, (conn) => {
  const id = ++n;
  report({ ev: "connection", id });
  if (pauseMs) {
    conn.pause();
    setTimeout(() => { report({ ev: "buffered", id, length: conn.readableLength }); conn.resume(); }, pauseMs);
  }
  conn.on("data", (d) => {
    report({ ev: "data", id, hex: d.length <= 1024 ? d.toString("hex") : undefined, length: d.length });
    if (d.includes("!close")) conn.destroy(); else conn.write(d);
  });
  conn.on("end", () => report({ ev: "end", id }));
  conn.on("close", () => report({ ev: "close", id }));
  conn.on("error", (e) => report({ ev: "error", id, message: e.message }));
}, native);
report({ ev: "ready", transport: port.transport });
`;

interface AgentEvent {
  ev: "ready" | "connection" | "data" | "end" | "close" | "error" | "buffered";
  transport?: string;
  id?: number;
  hex?: string;
  length?: number;
  message?: string;
}

const hasPython = spawnSync("python3", ["-c", "import pty, tty, select"], { stdio: "ignore" }).status === 0;
const portModule = new URL("../../src/guest/virtio-port.ts", import.meta.url).href;
const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

/** The host side of the stand-in port, plus the agent's reports. */
class PtyHost {
  output = Buffer.alloc(0);
  readonly events: AgentEvent[] = [];
  private agent: ChildProcess | undefined;

  private constructor(private readonly relay: ChildProcess) {}

  static async start(env: Record<string, string> = {}): Promise<PtyHost> {
    const relay = spawn("python3", ["-c", RELAY], { stdio: ["pipe", "pipe", "inherit"] });
    const host = new PtyHost(relay);
    const device = await new Promise<string>((resolveDevice, reject) => {
      let text = "";
      const onData = (chunk: Buffer): void => {
        text += chunk.toString("latin1");
        const end = text.indexOf("\n");
        if (end < 0) return;
        relay.stdout?.off("data", onData);
        host.output = Buffer.from(text.slice(end + 1), "latin1");
        relay.stdout?.on("data", (c: Buffer) => {
          host.output = Buffer.concat([host.output, c]);
        });
        resolveDevice(text.slice(0, end));
      };
      relay.stdout?.on("data", onData);
      relay.once("exit", () => reject(new Error("the pty relay exited before naming its device")));
    });
    const agent = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", AGENT], {
      cwd: repoRoot,
      env: { ...process.env, DEVICE: device, PORT_MODULE: portModule, ...env },
      stdio: ["ignore", "pipe", "inherit"],
    });
    host.agent = agent;
    let pending = "";
    agent.stdout?.setEncoding("utf8");
    agent.stdout?.on("data", (chunk: string) => {
      pending += chunk;
      for (let end = pending.indexOf("\n"); end >= 0; end = pending.indexOf("\n")) {
        host.events.push(JSON.parse(pending.slice(0, end)) as AgentEvent);
        pending = pending.slice(end + 1);
      }
    });
    await host.waitEvent((e) => e.ev === "ready", 20_000);
    return host;
  }

  send(data: string | Buffer): void {
    this.relay.stdin?.write(data);
  }

  /** Hangs up the host side: the relay closes the pty master. */
  disconnect(): void {
    this.relay.stdin?.end();
  }

  async waitOutput(predicate: (output: Buffer) => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!predicate(this.output)) {
      if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}; host got ${JSON.stringify(this.output.toString("latin1"))}`);
      await sleep(5);
    }
  }

  async waitEvent(predicate: (e: AgentEvent) => boolean, timeoutMs = 20_000): Promise<AgentEvent> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const found = this.events.find(predicate);
      if (found) return found;
      if (performance.now() > deadline) assert.fail(`timed out waiting for an agent event; got ${JSON.stringify(this.events)}`);
      await sleep(5);
    }
  }

  /** Everything connection `id` received, in order. */
  received(id: number): Buffer {
    return Buffer.concat(this.events.filter((e) => e.ev === "data" && e.id === id).map((e) => Buffer.from(e.hex ?? "", "hex")));
  }

  receivedLength(id: number): number {
    return this.events.filter((e) => e.ev === "data" && e.id === id).reduce((sum, e) => sum + (e.length ?? 0), 0);
  }

  /**
   * Retries `check` until it holds: the agent's events (connections, bytes it received) come on its stdout,
   * another pipe than the port's echo, so they may trail the output the test waited for.
   */
  async settled(check: () => void, timeoutMs = 20_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      try {
        return check();
      } catch (err) {
        if (performance.now() > deadline) throw err;
        await sleep(5);
      }
    }
  }

  connections(): number[] {
    return this.events.filter((e) => e.ev === "connection").map((e) => e.id as number);
  }

  agentAlive(): boolean {
    return this.agent !== undefined && this.agent.exitCode === null && this.agent.signalCode === null;
  }

  async stop(): Promise<void> {
    for (const child of [this.agent, this.relay]) {
      if (!child || child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise<void>((resolveExit) => child.once("exit", () => resolveExit()));
      child.kill("SIGKILL");
      await exited;
    }
  }
}

const nonce = (): string => randomBytes(16).toString("hex");
const ready = (n: string): string => `CORRAL-READY ${n} ${AGENT_VERSION}\n`;

const transports = [
  { transport: "thread-pool", env: {} as Record<string, string>, skip: false as string | false },
  { transport: "relay", env: { NATIVE: addon ?? "" }, skip: addon ? false : "the native addon does not build here (gcc, Node-API headers)" },
];

for (const { transport, env: transportEnv, skip } of transports) {
  async function withHost(body: (host: PtyHost) => Promise<void>, env: Record<string, string> = {}): Promise<void> {
    const host = await PtyHost.start({ ...transportEnv, ...env });
    try {
      assert.equal(host.events[0]?.transport, transport);
      await body(host);
    } finally {
      await host.stop();
    }
  }

  describe(`VirtioPort over a pseudo-terminal stand-in (${transport})`, { timeout: 180_000, skip: hasPython ? skip : "python3 is needed to hold the pty master" }, () => {
    test("answers the first valid HELLO with READY, skipping older lines, and forwards the bytes that came with it", async () => {
      await withHost(async (host) => {
        const n = nonce();
        host.send(`\x00\x00\x04stale HTTP/2 bytes\nCORRAL-HELLO short\nCORRAL-READY ${n} 0.0.0\nCORRAL-HELLO ${n}\nping`);
        await host.waitOutput((o) => o.length >= ready(n).length + 4, "READY and the echo");
        assert.equal(host.output.toString("latin1"), `${ready(n)}ping`, "READY comes first, exactly once, then the echo");
        await host.settled(() => assert.deepEqual(host.connections(), [1]));
        await host.settled(() => assert.equal(host.received(1).toString("latin1"), "ping"));
      });
    });

    test("assembles a HELLO split across reads and opens no connection before it is complete", async () => {
      await withHost(async (host) => {
        const n = nonce();
        const line = `CORRAL-HELLO ${n}\n`;
        for (const piece of [line.slice(0, 9), line.slice(9, 20), line.slice(20, -1)]) {
          host.send(piece);
          await sleep(40);
          assert.deepEqual(host.connections(), []);
          assert.equal(host.output.length, 0);
        }
        host.send("\n");
        await host.waitOutput((o) => o.length >= ready(n).length, "READY");
        assert.equal(host.output.toString("latin1"), ready(n));
        await host.settled(() => assert.deepEqual(host.connections(), [1]));
      });
    });

    test("passes every byte value through unchanged in both directions", async () => {
      await withHost(async (host) => {
        const n = nonce();
        host.send(`CORRAL-HELLO ${n}\n`);
        await host.waitOutput((o) => o.length >= ready(n).length, "READY");
        const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
        host.send(all);
        await host.waitOutput((o) => o.length >= ready(n).length + all.length, "the echo");
        await host.settled(() => assert.deepEqual(host.received(1), all));
        assert.deepEqual(host.output.subarray(ready(n).length), all);
      });
    });

    test("a new HELLO at the start of a read ends the live connection and starts a fresh one", async () => {
      await withHost(async (host) => {
        const [n1, n2] = [nonce(), nonce()];
        host.send(`CORRAL-HELLO ${n1}\n`);
        await host.waitOutput((o) => o.length >= ready(n1).length, "READY 1");
        host.send("one");
        await host.waitOutput((o) => o.toString("latin1").endsWith("one"), "echo of one");
        // A line that looks like HELLO but is not valid is ordinary data for the live connection.
        host.send("CORRAL-HELLO not-valid!\n");
        await host.waitOutput((o) => o.toString("latin1").endsWith("not-valid!\n"), "echo of the invalid HELLO");
        await host.settled(() => assert.deepEqual(host.connections(), [1]));
        host.send(`CORRAL-HELLO ${n2}\n`);
        await host.waitEvent((e) => e.ev === "connection" && e.id === 2);
        await host.waitEvent((e) => e.ev === "end" && e.id === 1);
        await host.waitOutput((o) => o.toString("latin1").endsWith(ready(n2)), "READY 2");
        host.send("two");
        await host.waitOutput((o) => o.toString("latin1").endsWith("two"), "echo of two");
        assert.equal(host.output.toString("latin1"), `${ready(n1)}oneCORRAL-HELLO not-valid!\n${ready(n2)}two`);
        await host.settled(() => assert.equal(host.received(1).toString("latin1"), "oneCORRAL-HELLO not-valid!\n"));
        await host.settled(() => assert.equal(host.received(2).toString("latin1"), "two"));
      });
    });

    test("after the agent closes its connection, host bytes are dropped until the next HELLO", async () => {
      await withHost(async (host) => {
        const [n1, n2] = [nonce(), nonce()];
        host.send(`CORRAL-HELLO ${n1}\n`);
        await host.waitOutput((o) => o.length >= ready(n1).length, "READY 1");
        host.send("!close");
        await host.waitEvent((e) => e.ev === "close" && e.id === 1);
        host.send("lost bytes");
        await sleep(100);
        await host.settled(() => assert.equal(host.received(1).toString("latin1"), "!close"));
        await host.settled(() => assert.deepEqual(host.connections(), [1]));
        host.send(`CORRAL-HELLO ${n2}\n`);
        await host.waitOutput((o) => o.toString("latin1").endsWith(ready(n2)), "READY 2");
        host.send("kept");
        await host.waitOutput((o) => o.toString("latin1").endsWith("kept"), "echo of kept");
        assert.equal(host.output.toString("latin1"), `${ready(n1)}${ready(n2)}kept`);
        await host.settled(() => assert.deepEqual(host.connections(), [1, 2]));
        await host.settled(() => assert.equal(host.received(2).toString("latin1"), "kept"));
      });
    });

    // A read blocked on a pty when the master closes fails with EIO (later reads return 0); on a virtio port the
    // blocked read returns 0. So this covers the port's error path: "an error is treated as a disconnect".
    test("a host hang-up during a blocked read destroys the connection with the error, and the agent carries on", async () => {
      await withHost(async (host) => {
        const n = nonce();
        host.send(`CORRAL-HELLO ${n}\nhi`);
        await host.waitOutput((o) => o.toString("latin1").endsWith("hi"), "echo of hi");
        host.disconnect();
        await host.waitEvent((e) => e.ev === "close" && e.id === 1);
        await sleep(300); // several idle retries of the read loop
        assert.deepEqual(
          host.events.filter((e) => e.id === 1 && e.ev !== "data"),
          [
            { ev: "connection", id: 1 },
            { ev: "error", id: 1, message: "EIO: i/o error, read" },
            { ev: "close", id: 1 },
          ],
        );
        await host.settled(() => assert.deepEqual(host.connections(), [1]));
        assert.equal(host.agentAlive(), true, "the agent process died after the hang-up");
      });
    });

    test("a consumer that stops reading holds the port back without losing or reordering bytes", async () => {
      await withHost(
        async (host) => {
          const n = nonce();
          const payload = randomBytes(256 * 1024);
          host.send(`CORRAL-HELLO ${n}\n`);
          host.send(payload);
          // While the consumer is paused the port stops reading once the stream's buffer is full: at most one
          // more read (64 KiB) past the 16 KiB high-water mark is held in memory, the rest waits in the device.
          const buffered = await host.waitEvent((e) => e.ev === "buffered", 20_000);
          assert.ok((buffered.length ?? Infinity) <= 80 * 1024, `${buffered.length} bytes were buffered while paused`);
          assert.ok((buffered.length ?? 0) > 0, "some bytes were already delivered to the stream");
          await host.waitOutput((o) => o.length >= ready(n).length + payload.length, "the whole echo", 20_000);
          assert.equal(host.receivedLength(1), payload.length);
          assert.ok(host.output.subarray(ready(n).length).equals(payload), "the echo differs from what was sent");
        },
        { PAUSE_MS: "300" },
      );
    });
  });
}
