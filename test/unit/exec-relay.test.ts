import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { constants as h2, type ServerHttp2Stream } from "node:http2";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { EXIT_LOST, lostFrame, relayExecFrames } from "../../src/daemon/exec/exec-relay.ts";
import { startScriptedAgent, writePieces as piecesScript, type StreamScript } from "../helpers/scripted-agent.ts";

const agent = await startScriptedAgent();
after(() => agent.close());

const request = (script: StreamScript): ReturnType<typeof agent.request> => agent.request(script);

/** Writes each piece as its own DATA frame (a short pause between them), then ends or runs `last`. */
function writePieces(stream: ServerHttp2Stream, pieces: Array<string | Buffer>, last?: StreamScript): void {
  piecesScript(pieces, last)(stream);
}

async function readAll(out: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of out) parts.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
  return Buffer.concat(parts);
}

const line = (frame: Record<string, unknown>): string => `${JSON.stringify(frame)}\n`;
const started = line({ type: "started", timestamp: "2025-01-01T00:00:00.000Z", stdout: "", stderr: "", exit_code: 0, pid: 42, started_at: "2025-01-01T00:00:00.000Z" });
const stdoutFrame = (text: string): string => line({ type: "stdout", timestamp: "2025-01-01T00:00:00.001Z", stdout: text, stderr: "", exit_code: 0 });
const exitFrame = line({ type: "exit", timestamp: "2025-01-01T00:00:01.000Z", stdout: "", stderr: "", exit_code: 0, ended_at: "2025-01-01T00:00:01.000Z" });

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

function lastLine(bytes: Buffer): Record<string, unknown> {
  const lines = bytes.toString("utf8").split("\n");
  assert.equal(lines.pop(), "", "the output ends with a newline");
  return JSON.parse(lines.at(-1) as string) as Record<string, unknown>;
}

function assertLostFrame(frame: Record<string, unknown>, error: string | RegExp): void {
  assert.deepEqual(Object.keys(frame), ["type", "timestamp", "stdout", "stderr", "exit_code", "ended_at", "error"]);
  assert.equal(frame.type, "exit");
  assert.equal(frame.exit_code, 255);
  assert.equal(frame.stdout, "");
  assert.equal(frame.stderr, "");
  assert.match(frame.timestamp as string, ISO);
  assert.equal(frame.ended_at, frame.timestamp);
  if (typeof error === "string") assert.equal(frame.error, error);
  else assert.match(frame.error as string, error);
}

describe("lostFrame", { timeout: 20_000 }, () => {
  test("is one NDJSON exit line with exit code 255 and the message", () => {
    assert.equal(EXIT_LOST, 255);
    const text = lostFrame("Gone");
    assert.ok(text.endsWith("\n"));
    assert.equal(text.indexOf("\n"), text.length - 1);
    assert.ok(text.startsWith('{"type":"exit"'), "starts the way the relay recognises exit frames");
    assertLostFrame(JSON.parse(text) as Record<string, unknown>, "Gone");
  });
});

describe("relayExecFrames", { timeout: 20_000 }, () => {
  test("passes the bytes through unchanged, however they are chunked, and adds nothing after an exit frame", async () => {
    const body = Buffer.from(started + stdoutFrame("héllo € wörld\n") + line({ type: "stderr", timestamp: "t", stdout: "", stderr: "oops", exit_code: 0 }) + exitFrame, "utf8");
    const euro = body.indexOf(Buffer.from("€"));
    const cuts = [0, 1, 10, started.length, euro + 1, euro + 2, body.length - exitFrame.length + 3, body.length - 1, body.length];
    assert.deepEqual(
      [...cuts].sort((a, b) => a - b),
      cuts,
    );
    const pieces = cuts.slice(1).map((cut, i) => body.subarray(cuts[i], cut));
    const { stream, cancel } = await request((s) => writePieces(s, pieces));
    const out = await readAll(relayExecFrames(stream, cancel));
    assert.deepEqual(out, body);
  });

  test("recognises the exit frame when its line is split across chunks", async () => {
    for (const at of [1, 5, 9, 13, 14, 20]) {
      const body = started + exitFrame;
      const cut = started.length + at;
      const { stream, cancel } = await request((s) => writePieces(s, [body.slice(0, cut), body.slice(cut)]));
      const out = await readAll(relayExecFrames(stream, cancel));
      assert.equal(out.toString("utf8"), body, `split ${at} bytes into the exit line`);
    }
  });

  test("recognises the exit frame when the split falls right before it", async () => {
    const { stream, cancel } = await request((s) => writePieces(s, [started, exitFrame.slice(0, 1), exitFrame.slice(1)]));
    assert.equal((await readAll(relayExecFrames(stream, cancel))).toString(), started + exitFrame);
  });

  test("adds a final exit frame with 255 and an error when the stream ends before the exit frame", async () => {
    const body = started + stdoutFrame("partial output\n");
    const { stream, cancel } = await request((s) => writePieces(s, [body]));
    const out = await readAll(relayExecFrames(stream, cancel));
    assert.ok(out.subarray(0, body.length).equals(Buffer.from(body)), "the frames that arrived are passed through first");
    const rest = out.subarray(body.length).toString();
    assert.equal(rest.split("\n").length, 2, "exactly one line is added");
    assertLostFrame(lastLine(out), "The connection to the guest agent ended before the command did");
  });

  test("a frame that only mentions exit does not count as the exit frame", async () => {
    const tricky = `${stdoutFrame('{"type":"exit"}\n') + line({ exit_code: 0, type: "exit" })} {"type":"exit"}\n`;
    const { stream, cancel } = await request((s) => writePieces(s, [started, tricky]));
    const out = await readAll(relayExecFrames(stream, cancel));
    assertLostFrame(lastLine(out), "The connection to the guest agent ended before the command did");
  });

  test("an empty stream still gets an exit frame", async () => {
    const { stream, cancel } = await request((s) => s.end());
    const out = await readAll(relayExecFrames(stream, cancel));
    assert.equal(out.toString().split("\n").length, 2);
    assertLostFrame(lastLine(out), "The connection to the guest agent ended before the command did");
  });

  test("adds one final exit frame when the agent resets the stream before the exit frame", async () => {
    const body = started + stdoutFrame("x");
    const { stream, cancel } = await request((s) => writePieces(s, [body], (st) => st.close(h2.NGHTTP2_INTERNAL_ERROR)));
    const out = await readAll(relayExecFrames(stream, cancel));
    assert.ok(out.subarray(0, body.length).equals(Buffer.from(body)));
    assert.equal(out.toString().slice(body.length).split("\n").length, 2, "exactly one line is added");
    // Node reports "end" before the reset's "error", so which of the two messages wins depends on timing.
    assertLostFrame(lastLine(out), /^The connection to the guest agent (ended before the command did|failed: Stream closed with error code NGHTTP2_INTERNAL_ERROR)$/);
  });

  test("adds one final exit frame when the whole agent connection drops", async () => {
    const body = started + stdoutFrame("x");
    const { stream, cancel } = await request((s) =>
      writePieces(s, [body], () => {
        agent.dropConnections();
      }),
    );
    const out = await readAll(relayExecFrames(stream, cancel));
    assert.ok(out.subarray(0, body.length).equals(Buffer.from(body)));
    assertLostFrame(lastLine(out), /^The connection to the guest agent (ended before the command did|failed: .+)$/);
  });

  test("the added exit frame starts on a line of its own when the stream broke mid-line", async () => {
    const partial = stdoutFrame("cut here").slice(0, 30);
    const { stream, cancel } = await request((s) => writePieces(s, [started + partial], (st) => st.close(h2.NGHTTP2_INTERNAL_ERROR)));
    const out = (await readAll(relayExecFrames(stream, cancel))).toString();
    assert.ok(out.startsWith(`${started}${partial}\n{"type":"exit"`), JSON.stringify(out));
    assertLostFrame(lastLine(Buffer.from(out)), /^The connection to the guest agent /);
  });

  test("a stream that broke inside the exit frame's line still ends with a complete exit frame", async () => {
    // The exit code was lost with the rest of the line, so a lost-connection frame must follow it.
    const partial = exitFrame.slice(0, 20);
    const { stream, cancel } = await request((s) => writePieces(s, [started + partial]));
    const out = await readAll(relayExecFrames(stream, cancel));
    assertLostFrame(lastLine(out), "The connection to the guest agent ended before the command did");
  });

  test("destroying the relay cancels the HTTP/2 stream", async () => {
    const { stream, served, cancel } = await request((s) => s.write(started));
    const relay = relayExecFrames(stream, cancel);
    const first = await new Promise<Buffer>((resolve) => relay.once("data", resolve));
    assert.equal(first.toString(), started);
    const serverStream = await served;
    const closed = new Promise<number>((resolve) => serverStream.once("close", () => resolve(serverStream.rstCode as number)));
    relay.destroy();
    const code = await Promise.race([closed, sleep(1000).then(() => -1)]);
    assert.equal(code, h2.NGHTTP2_CANCEL, "the agent sees the stream cancelled");
    assert.equal(stream.closed, true);
    assert.equal(stream.rstCode, h2.NGHTTP2_CANCEL);
  });

  // The client of an exec with stdin went away mid-input. A command reading stdin must be killed without
  // first reading the end of its input (`cat > file; next-step` would finish a cut file and go on).
  test("destroying the relay cuts the stdin being sent: the agent sees it reset, never ended", async () => {
    const stdin = Buffer.alloc(64 * 1024, 0x61);
    const seen: string[] = [];
    let received = 0;
    let allReceived!: () => void;
    const receivedAll = new Promise<void>((resolve) => {
      allReceived = resolve;
    });
    const { stream, served, cancel } = await request((s) => {
      s.write(started);
      s.on("data", (chunk: Buffer) => {
        received += chunk.length;
        if (received === stdin.length) allReceived();
      });
      for (const name of ["end", "aborted"]) s.on(name, () => seen.push(name));
      // As the agent's exec route does: node ends a reset body too, so a reset must end it in an error.
      s.once("aborted", () => s.destroy(new Error("cut off")));
    });
    const relay = relayExecFrames(stream, cancel);
    relay.resume();
    stream.write(stdin);
    await receivedAll; // the agent has kept up with the input: nothing is queued when the cut comes
    const serverStream = await served;
    const closed = new Promise<void>((resolve) => serverStream.once("close", () => resolve()));
    relay.destroy();
    await closed;
    assert.deepEqual(seen, ["aborted"]);
    assert.equal(serverStream.rstCode, h2.NGHTTP2_CANCEL);
  });

  test("holds the agent back while the client does not read, and loses nothing", async () => {
    const payload = stdoutFrame("y".repeat(1000)).repeat(2000); // about 2 MB
    let serverStream!: ServerHttp2Stream;
    let finished = false;
    const { stream, cancel } = await request((s) => {
      serverStream = s;
      s.write(started);
      s.write(payload);
      s.end(exitFrame, () => {
        finished = true;
      });
    });
    const relay = relayExecFrames(stream, cancel);
    await sleep(200);
    assert.ok(relay.readableLength <= 128 * 1024, `${relay.readableLength} bytes buffered in the relay while nobody read`);
    assert.equal(finished, false, "the agent could write everything although nobody read");
    assert.ok(serverStream.writableLength > 0);
    const out = await readAll(relay);
    assert.equal(out.length, Buffer.byteLength(started + payload + exitFrame));
    assert.equal(out.toString(), started + payload + exitFrame);
  });
});
