import assert from "node:assert/strict";
import { PassThrough, Readable } from "node:stream";
import { test } from "node:test";
import { pump } from "../../src/util/pump.ts";

function collector(): { sink: PassThrough; bytes: () => number } {
  const sink = new PassThrough();
  let bytes = 0;
  sink.on("data", (chunk: Buffer) => {
    bytes += chunk.length;
  });
  return { sink, bytes: () => bytes };
}

test("a whole body is pumped and the sink ended", async () => {
  const { sink, bytes } = collector();
  await pump(Readable.from([Buffer.alloc(1000), Buffer.alloc(24)]), sink);
  assert.equal(bytes(), 1024);
  assert.equal(sink.writableEnded, true);
});

test("a body cut off midway rejects, and the sink is not ended", async () => {
  const { sink } = collector();
  const body = new Readable({ read() {} });
  body.push(Buffer.alloc(100));
  setImmediate(() => body.destroy());
  await assert.rejects(pump(body, sink), /before it was complete/);
  assert.equal(sink.writableEnded, false);
});

// An upload the host reset while the agent was still opening its temporary file: the stream had closed before
// the pump listened for it, and a pump that waited for "close" waited forever, leaving the file behind.
test("a body destroyed before the pump started rejects at once", async () => {
  const { sink } = collector();
  const body = new Readable({ read() {} });
  body.push(Buffer.alloc(100));
  body.destroy();
  await new Promise((resolve) => setImmediate(resolve));
  await assert.rejects(pump(body, sink), /before it was complete/);
  const failed = new Readable({ read() {} });
  failed.on("error", () => undefined); // the route's own listener, in the agent
  failed.destroy(new Error("reset by the host"));
  await new Promise((resolve) => setImmediate(resolve));
  await assert.rejects(pump(failed, sink), /reset by the host/);
  assert.equal(sink.writableEnded, false);
});
