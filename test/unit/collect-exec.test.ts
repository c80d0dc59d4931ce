import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { constants as h2, type ClientHttp2Stream } from "node:http2";
import { fileURLToPath } from "node:url";
import { BUFFERED_OUTPUT_LIMIT, collectExec } from "../../src/daemon/exec/collect-exec.ts";
import { startScriptedAgent, writePieces, type StreamScript } from "../helpers/scripted-agent.ts";
import type { ExecFrame } from "../../src/protocol/agent.ts";

const agent = await startScriptedAgent();
after(() => agent.close());

async function request(script: StreamScript): Promise<ClientHttp2Stream> {
  return (await agent.request(script)).stream;
}

const serve = writePieces;

const T0 = "2025-01-01T00:00:00.000Z";
const T1 = "2025-01-01T00:00:02.500Z";

function frame(type: ExecFrame["type"], fields: Partial<ExecFrame> = {}): string {
  return `${JSON.stringify({ type, timestamp: T0, stdout: "", stderr: "", exit_code: 0, ...fields })}\n`;
}
const startedFrame = frame("started", { pid: 4242, started_at: T0 });
const out = (text: string, encoding?: "base64"): string => frame("stdout", encoding ? { stdout: text, encoding } : { stdout: text });
const err = (text: string, encoding?: "base64"): string => frame("stderr", encoding ? { stderr: text, encoding } : { stderr: text });

describe("collectExec", { timeout: 20_000 }, () => {
  test("collects text output, separating stdout and stderr, and copies the exit details", async () => {
    const stream = await request(
      serve([startedFrame, out("héllo "), err("warn: "), out("wörld\n"), err("disk €\n"), frame("exit", { exit_code: 143, ended_at: T1, signal: "SIGTERM" })]),
    );
    const result = await collectExec(stream, "text");
    assert.deepEqual(result, {
      stdout: "héllo wörld\n",
      stderr: "warn: disk €\n",
      exit_code: 143,
      pid: 4242,
      started_at: T0,
      ended_at: T1,
      signal: "SIGTERM",
    });
  });

  test("copies the error of the exit frame", async () => {
    const stream = await request(serve([frame("exit", { exit_code: 127, ended_at: T1, error: 'Command not found: "nope"' })]));
    assert.deepEqual(await collectExec(stream, "text"), { stdout: "", stderr: "", exit_code: 127, ended_at: T1, error: 'Command not found: "nope"' });
  });

  test("base64 chunks of any length are decoded and re-encoded as one valid base64 string", async () => {
    const chunks = [Buffer.from([0xff]), Buffer.from([0x00, 0xfe]), Buffer.from([1, 2, 3, 4]), Buffer.from([0x80, 0x81, 0x82, 0x83, 0x84])];
    const errChunks = [Buffer.from("é"), Buffer.from([0xc3])];
    const stream = await request(
      serve([
        startedFrame,
        ...chunks.map((c) => out(c.toString("base64"), "base64")),
        ...errChunks.map((c) => err(c.toString("base64"), "base64")),
        frame("exit", { ended_at: T1 }),
      ]),
    );
    const result = await collectExec(stream, "base64");
    const all = Buffer.concat(chunks);
    assert.equal(result.stdout, all.toString("base64"));
    assert.deepEqual(Buffer.from(result.stdout, "base64"), all);
    assert.equal(result.stderr, Buffer.concat(errChunks).toString("base64"));
    assert.equal(result.encoding, "base64");
    assert.equal(result.exit_code, 0);
    // The naive join of the pieces would have padding in the middle.
    assert.notEqual(result.stdout, chunks.map((c) => c.toString("base64")).join(""));
  });

  test("text frames collected in base64 mode are encoded too", async () => {
    const stream = await request(serve([out("plain"), frame("exit")]));
    const result = await collectExec(stream, "base64");
    assert.equal(result.stdout, Buffer.from("plain").toString("base64"));
    assert.equal(result.encoding, "base64");
  });

  test("frames split across chunks, several per chunk, blank lines and a final line without newline are all read", async () => {
    const body = Buffer.from(`${startedFrame}\n${out("a€b")}${err("e")}\r\n${out("c")}${frame("exit", { exit_code: 7 }).trimEnd()}`, "utf8");
    const euro = body.indexOf(Buffer.from("€"));
    const pieces = [body.subarray(0, 5), body.subarray(5, euro + 1), body.subarray(euro + 1, euro + 2), body.subarray(euro + 2, body.length - 4), body.subarray(body.length - 4)];
    const stream = await request(serve(pieces));
    const result = await collectExec(stream, "text");
    assert.equal(result.stdout, "a€bc");
    assert.equal(result.stderr, "e");
    assert.equal(result.exit_code, 7);
    assert.equal(result.pid, 4242);
  });

  test("output over the limit is cut at exactly the limit and marked truncated", async () => {
    const stream = await request(serve([out("0123456"), out("789abcdef"), out("ghij"), err("small"), frame("exit")]));
    const result = await collectExec(stream, "text", 10);
    assert.equal(result.stdout, "0123456789");
    assert.equal(Buffer.byteLength(result.stdout), 10);
    assert.equal(result.stderr, "small");
    assert.equal(result.truncated, true);
    assert.equal(result.exit_code, 0);
  });

  test("truncation applies to stderr as well, and to the decoded bytes in base64 mode", async () => {
    const bytes = Buffer.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const stream = await request(serve([err(bytes.subarray(0, 5).toString("base64"), "base64"), err(bytes.subarray(5).toString("base64"), "base64"), frame("exit")]));
    const result = await collectExec(stream, "base64", 8);
    assert.deepEqual(Buffer.from(result.stderr, "base64"), bytes.subarray(0, 8));
    assert.equal(result.stdout, "");
    assert.equal(result.truncated, true);
  });

  test("output of exactly the limit is not truncated", async () => {
    const stream = await request(serve([out("01234"), out("56789"), frame("exit")]));
    const result = await collectExec(stream, "text", 10);
    assert.equal(result.stdout, "0123456789");
    assert.equal("truncated" in result, false);
  });

  test("the default limit is 16 MiB", () => {
    assert.equal(BUFFERED_OUTPUT_LIMIT, 16 * 1024 * 1024);
  });

  test("a stream that ends without an exit frame gives 255 with an error, keeping what arrived", async () => {
    const stream = await request(serve([startedFrame, out("so far")]));
    assert.deepEqual(await collectExec(stream, "text"), {
      stdout: "so far",
      stderr: "",
      exit_code: 255,
      pid: 4242,
      started_at: T0,
      error: "The connection to the guest agent ended before the command did",
    });
  });

  test("a stream reset by the agent gives 255 with an error", async () => {
    const stream = await request(serve([startedFrame, out("so far")], (s) => s.close(h2.NGHTTP2_INTERNAL_ERROR)));
    const result = await collectExec(stream, "text");
    assert.equal(result.exit_code, 255);
    assert.equal(result.stdout, "so far");
    assert.match(result.error as string, /^The connection to the guest agent (ended before the command did|failed: Stream closed with error code NGHTTP2_INTERNAL_ERROR)$/);
  });

  test("a dropped agent connection gives 255 with an error", async () => {
    const stream = await request(
      serve([startedFrame, out("so far")], () => {
        agent.dropConnections();
      }),
    );
    const result = await collectExec(stream, "text");
    assert.equal(result.exit_code, 255);
    assert.equal(result.stdout, "so far");
    assert.match(result.error as string, /^The connection to the guest agent (ended before the command did|failed: .+)$/);
  });

  test("a line that is not JSON is skipped: the output and exit frame after it still count", async () => {
    const stream = await request(serve([startedFrame, "this is not json\n", out("later"), frame("exit")]));
    const result = await collectExec(stream, "text");
    assert.equal(result.exit_code, 0);
    assert.equal(result.stdout, "later");
    assert.equal(result.error, undefined);
  });

  test("without an exit frame, unreadable lines are counted in the error", async () => {
    const stream = await request(serve([startedFrame, "not json\n", "nor this\n"]));
    const result = await collectExec(stream, "text");
    assert.equal(result.exit_code, 255);
    assert.equal(result.error, "The connection to the guest agent ended before the command did (2 unreadable lines)");
  });

  // Node emits a reset's "error" after "end"; a stream nobody else listens to must not crash the daemon.
  test("a stream reset does not raise an uncaught error when collectExec is the stream's only reader", async () => {
    // Run in a child process: the uncaught error would otherwise land in this test runner.
    const script = `
        import { createServer, connect, constants } from "node:http2";
        const { collectExec } = await import(process.env.MODULE);
        const server = createServer();
        server.on("stream", (s) => { s.on("error", () => {}); s.respond({ ":status": 200 }); s.write('{"type":"stdout","stdout":"x"}\\n'); setTimeout(() => s.close(constants.NGHTTP2_INTERNAL_ERROR), 20); });
        await new Promise((r) => server.listen(0, "127.0.0.1", r));
        const session = connect("http://127.0.0.1:" + server.address().port);
        const stream = session.request({ ":method": "POST", ":path": "/" });
        await new Promise((r) => stream.once("response", r));
        const result = await collectExec(stream, "text");
        await new Promise((r) => setTimeout(r, 100));
        console.log(JSON.stringify(result));
        session.close(); server.close();
      `;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: fileURLToPath(new URL("../..", import.meta.url)),
      env: { ...process.env, MODULE: new URL("../../src/daemon/exec/collect-exec.ts", import.meta.url).href },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(stderr, "");
    assert.equal(code, 0);
    assert.equal((JSON.parse(stdout) as { exit_code: number }).exit_code, 255);
  });
});
