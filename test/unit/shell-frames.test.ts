import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  closeReason,
  decodeWindowSize,
  describeShellExit,
  encodeFrame,
  encodeWindowSize,
  FRAME_TYPE,
  FrameDecoder,
  FrameTooLargeError,
  MAX_FRAME_PAYLOAD,
  parseShellExit,
} from "../../src/protocol/shell.ts";

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);

describe("shell frames", () => {
  test("a frame is the type, the big-endian payload length, then the payload", () => {
    assert.deepEqual(encodeFrame(FRAME_TYPE.data, new TextEncoder().encode("hi")), bytes(0x01, 0, 0, 0, 2, 0x68, 0x69));
    assert.deepEqual(encodeFrame(FRAME_TYPE.sessionClose), bytes(0x05, 0, 0, 0, 0));
    assert.deepEqual(encodeWindowSize(300, 2), bytes(0x02, 0, 0, 0, 8, 0, 0, 0x01, 0x2c, 0, 0, 0, 2));
  });

  test("the decoder splits several frames in one chunk and joins a frame split over chunks", () => {
    const stream = new Uint8Array([...encodeFrame(FRAME_TYPE.data, bytes(1, 2, 3)), ...encodeFrame(FRAME_TYPE.heartbeat), ...encodeWindowSize(80, 24)]);
    const whole = new FrameDecoder().push(stream);
    assert.deepEqual(
      whole.map((f) => f.type),
      [0x01, 0x04, 0x02],
    );
    assert.deepEqual(whole[0]?.payload, bytes(1, 2, 3));
    assert.deepEqual(decodeWindowSize(whole[2]?.payload as Uint8Array), { cols: 80, rows: 24 });

    // One byte at a time: the same frames, each as soon as its last byte arrives.
    const decoder = new FrameDecoder();
    const seen: number[] = [];
    for (let i = 0; i < stream.length; i++) {
      for (const frame of decoder.push(stream.subarray(i, i + 1))) seen.push(frame.type);
      if (i === 7) assert.deepEqual(seen, [0x01], "the data frame completes at its 8th byte");
    }
    assert.deepEqual(seen, [0x01, 0x04, 0x02]);
    assert.equal(decoder.buffered, 0);
  });

  test("a partial frame survives the caller reusing its buffer", () => {
    const decoder = new FrameDecoder();
    const chunk = Buffer.from(encodeFrame(FRAME_TYPE.data, bytes(9, 9, 9, 9)));
    assert.deepEqual(decoder.push(chunk.subarray(0, 6)), []);
    chunk.fill(0);
    const [frame] = decoder.push(bytes(9, 9, 9));
    assert.deepEqual(frame?.payload, bytes(9, 9, 9, 9));
  });

  test("a declared length over the limit is refused before any payload is buffered", () => {
    const header = bytes(0x01, 0xff, 0xff, 0xff, 0xff);
    assert.throws(() => new FrameDecoder().push(header), FrameTooLargeError);
    const limit = new Uint8Array(5);
    new DataView(limit.buffer).setUint32(1, MAX_FRAME_PAYLOAD);
    assert.deepEqual(new FrameDecoder().push(limit), [], "exactly the limit is allowed (and waits for its payload)");
  });

  test("window sizes: 8 bytes, both sides positive, clamped to what a terminal can be", () => {
    assert.equal(decodeWindowSize(bytes(0, 0, 0, 80)), undefined);
    assert.equal(decodeWindowSize(encodeWindowSize(0, 24).subarray(5)), undefined);
    assert.deepEqual(decodeWindowSize(encodeWindowSize(70000, 5).subarray(5)), { cols: 65535, rows: 5 });
  });

  test("exit statuses travel in the close reason and read back", () => {
    assert.equal(describeShellExit({ exit_code: 3 }), "Shell exited with code 3");
    assert.equal(describeShellExit({ exit_code: 137, signal: "SIGKILL" }), "Shell killed by SIGKILL (exit code 137)");
    assert.deepEqual(parseShellExit("Shell exited with code 0"), { exit_code: 0 });
    assert.deepEqual(parseShellExit("Shell killed by SIGHUP (exit code 129)"), { exit_code: 129, signal: "SIGHUP" });
    assert.equal(parseShellExit("Client closed the session"), undefined);
    assert.equal(parseShellExit(""), undefined);
  });

  test("close reasons are cut to 123 bytes without splitting a character", () => {
    assert.equal(closeReason("short"), "short");
    const long = closeReason("é".repeat(100));
    assert.ok(Buffer.byteLength(long) <= 123);
    assert.ok(long.endsWith("…"));
    assert.equal(Buffer.from(long).toString("utf8"), long, "still valid UTF-8");
  });
});
