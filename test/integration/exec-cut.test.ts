// An exec whose client goes away while it streams stdin, in a real VM: the command must be killed without
// first reading the end of its input. The script below would otherwise finish a cut file and run its next
// step, as it does when the client ends its input itself.
import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { endpointOf, openSocket } from "../helpers/raw-http.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";
import { until } from "../helpers/until.ts";

/** Writes its pid, copies stdin to a file, and, only if its input ended cleanly, leaves a marker. */
const SCRIPT = 'echo $$ > "$1/pid"; cat > "$1/out"; echo finished > "$1/marker"';

describe("exec with stdin cut by its client", { timeout: 600_000 }, () => {
  let daemon: TestDaemon;
  let hostname: string;

  before(async () => {
    daemon = await TestDaemon.create();
    await daemon.start();
    hostname = (await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "300s" })).hostname;
  });

  after(async () => {
    await daemon.dispose();
  });

  const guestSh = async (script: string, ...args: string[]): Promise<string> => {
    const result = await daemon.client.execBuffered(hostname, { cmd: "/bin/sh", args: ["-c", script, "sh", ...args] });
    assert.equal(result.exit_code, 0, `${script}: ${result.stderr}`);
    return result.stdout;
  };

  /** Starts the script over a raw connection, stdin chunked; resolves once the guest wrote `first` to the file. */
  async function startScript(dir: string, first: string): Promise<Socket> {
    await guestSh('mkdir -p "$1"', dir);
    const socket = await openSocket(endpointOf(daemon.url));
    socket.on("error", () => undefined);
    socket.resume(); // the answer's frames are not what this test reads
    const query = new URLSearchParams([
      ["cmd", "/bin/sh"],
      ["args", "-c"],
      ["args", SCRIPT],
      ["args", "sh"],
      ["args", dir],
      ["stdin", "true"],
    ]);
    socket.write(`POST /vm/${hostname}/exec?${query} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n`);
    socket.write(`${Buffer.byteLength(first).toString(16)}\r\n${first}\r\n`);
    await until(async () => ((await guestSh('cat "$1/out" 2>/dev/null || true', dir)) === first ? true : undefined), `the guest to copy "${first.trim()}"`, 120_000, 250);
    return socket;
  }

  /** Resolves once the script's shell is gone from the guest (killed, or finished). */
  async function scriptGone(dir: string): Promise<void> {
    const pid = (await guestSh('cat "$1/pid"', dir)).trim();
    assert.match(pid, /^\d+$/);
    await until(async () => ((await guestSh('[ -d "/proc/$1" ] && echo running || echo gone', pid)).trim() === "gone" ? true : undefined), "the script to end", 120_000, 250);
  }

  test("a client that disconnects mid-stdin kills the command before it reads an end of input", async () => {
    const dir = "/tmp/exec-cut";
    const socket = await startScript(dir, "part one\n");
    socket.destroy();
    await scriptGone(dir);
    assert.equal(await guestSh('cat "$1/out"', dir), "part one\n");
    assert.equal((await guestSh('[ -e "$1/marker" ] && echo present || echo absent', dir)).trim(), "absent", "the command went on as if its input were complete");
  });

  test("a client that ends its stdin lets the command read the end and go on", async () => {
    const dir = "/tmp/exec-ended";
    const socket = await startScript(dir, "part one\n");
    try {
      socket.write("0\r\n\r\n");
      await scriptGone(dir);
      assert.equal(await guestSh('cat "$1/out"', dir), "part one\n");
      assert.equal((await guestSh('cat "$1/marker"', dir)).trim(), "finished");
    } finally {
      socket.destroy();
    }
  });
});
