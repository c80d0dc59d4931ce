import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { formatSseComment, formatSseEvent, SseParser } from "../../src/protocol/sse.ts";

describe("Server-Sent Events", () => {
  test("an event is id, event and data lines, then a blank line", () => {
    assert.equal(formatSseEvent({ id: "7", event: "watch", data: '{"a":1}' }), 'id: 7\nevent: watch\ndata: {"a":1}\n\n');
    assert.equal(formatSseEvent({ data: "one\ntwo" }), "data: one\ndata: two\n\n");
    assert.equal(formatSseEvent({ id: "a\nb", data: "" }), "id: a b\ndata: \n\n", "an id cannot break its line");
  });

  test("comments start with a colon", () => {
    assert.equal(formatSseComment("heartbeat"), ": heartbeat\n\n");
    assert.equal(formatSseComment("a\nb"), ": a\n: b\n\n");
  });

  test("the parser rebuilds events from any chunking, skipping comments", () => {
    const text = `${formatSseComment("watching /tmp")}${formatSseEvent({ id: "1", event: "watch", data: '{"n":1}' })}${formatSseComment("heartbeat")}${formatSseEvent({ id: "2", data: "x\ny" })}`;
    for (const size of [1, 2, 3, 7, text.length]) {
      const parser = new SseParser();
      const events = [];
      for (let i = 0; i < text.length; i += size) events.push(...parser.push(text.slice(i, i + size)));
      assert.deepEqual(
        events,
        [
          { id: "1", event: "watch", data: '{"n":1}' },
          { id: "2", event: undefined, data: "x\ny" },
        ],
        `chunks of ${size}`,
      );
    }
  });

  test("CRLF and CR line ends, fields without a space, blocks without data", () => {
    const parser = new SseParser();
    assert.deepEqual(parser.push("id:5\r\nevent:e\r\n\r\nid: 6\rdata:a\r"), []);
    assert.deepEqual(parser.push("\r"), [], "a lone CR at the end may be half of a CRLF");
    assert.deepEqual(parser.push("\n"), [{ id: "6", event: undefined, data: "a" }]);
  });
});
