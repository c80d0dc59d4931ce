import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tailLines } from "../../src/util/tail.ts";

const BLOCK = 64 * 1024;

describe("tailLines", () => {
  let dir = "";
  let n = 0;
  const fileWith = async (content: string | Buffer): Promise<string> => {
    const path = join(dir, `f${n++}.log`);
    await writeFile(path, content);
    return path;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-tail-test-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("the last N lines, keeping the final newline", async () => {
    const file = await fileWith("one\ntwo\nthree\nfour\n");
    assert.equal(await tailLines(file, 1), "four\n");
    assert.equal(await tailLines(file, 2), "three\nfour\n");
    assert.equal(await tailLines(file, 3), "two\nthree\nfour\n");
  });

  test("asking for more lines than there are gives the whole file", async () => {
    const file = await fileWith("one\ntwo\n");
    assert.equal(await tailLines(file, 2), "one\ntwo\n");
    assert.equal(await tailLines(file, 50), "one\ntwo\n");
  });

  test("0 lines means the whole file", async () => {
    const file = await fileWith("a\nb\nc\n");
    assert.equal(await tailLines(file, 0), "a\nb\nc\n");
    const noNewline = await fileWith("a\nb");
    assert.equal(await tailLines(noNewline, 0), "a\nb");
  });

  test("a file without a trailing newline: the last line counts as a line", async () => {
    const file = await fileWith("one\ntwo\nthree");
    assert.equal(await tailLines(file, 1), "three");
    assert.equal(await tailLines(file, 2), "two\nthree");
    assert.equal(await tailLines(file, 3), "one\ntwo\nthree");
    assert.equal(await tailLines(file, 4), "one\ntwo\nthree");
  });

  test("a one-line file, with and without its newline", async () => {
    assert.equal(await tailLines(await fileWith("only\n"), 1), "only\n");
    assert.equal(await tailLines(await fileWith("only"), 1), "only");
  });

  test("empty lines are lines", async () => {
    const file = await fileWith("a\n\n\nb\n\n");
    assert.equal(await tailLines(file, 1), "\n");
    assert.equal(await tailLines(file, 2), "b\n\n");
    assert.equal(await tailLines(file, 3), "\nb\n\n");
  });

  test("an empty file reads as empty", async () => {
    const file = await fileWith("");
    assert.equal(await tailLines(file, 5), "");
    assert.equal(await tailLines(file, 0), "");
  });

  test("a missing file reads as empty", async () => {
    assert.equal(await tailLines(join(dir, "does-not-exist.log"), 10), "");
    assert.equal(await tailLines(join(dir, "no-dir", "x.log"), 0), "");
  });

  test("CRLF lines keep their carriage returns", async () => {
    const file = await fileWith("a\r\nb\r\nc\r\n");
    assert.equal(await tailLines(file, 2), "b\r\nc\r\n");
  });

  describe("files larger than one 64 KiB block", () => {
    const lines = Array.from({ length: 20_000 }, (_, i) => `line ${String(i).padStart(5, "0")} ${"x".repeat(i % 37)}`);
    const content = `${lines.join("\n")}\n`;

    test("the fixture spans several blocks", () => {
      assert.ok(Buffer.byteLength(content) > 8 * BLOCK);
    });

    test("a few lines from the end", async () => {
      const file = await fileWith(content);
      assert.equal(await tailLines(file, 3), `${lines.slice(-3).join("\n")}\n`);
    });

    test("more lines than fit in one block are gathered across blocks", async () => {
      const file = await fileWith(content);
      const wanted = 5_000;
      const got = await tailLines(file, wanted);
      assert.ok(Buffer.byteLength(got) > 2 * BLOCK, "spans several blocks");
      assert.equal(got, `${lines.slice(-wanted).join("\n")}\n`);
    });

    test("the whole file with 0, and with a count larger than the file", async () => {
      const file = await fileWith(content);
      assert.equal(await tailLines(file, 0), content);
      assert.equal(await tailLines(file, 1_000_000), content);
    });

    test("a single line longer than a block", async () => {
      const long = "y".repeat(3 * BLOCK + 17);
      const file = await fileWith(`first\n${long}\nlast`);
      assert.equal(await tailLines(file, 2), `${long}\nlast`);
      assert.equal(await tailLines(file, 3), `first\n${long}\nlast`);
    });

    test("a line that starts before the last block is returned whole", async () => {
      // The last block holds exactly two newlines, but the first of the two lines began in the block before.
      const long = "w".repeat(BLOCK);
      const file = await fileWith(`head\n${long}\nend\n`);
      assert.ok((await tailLines(file, 2)) === `${long}\nend\n`, "the long line is complete");
      assert.equal(await tailLines(file, 1), "end\n");
    });

    test("a line break exactly on the block boundary", async () => {
      // The last block starts right after this newline.
      const tail = `${"z".repeat(BLOCK - 5)}\nend\n`;
      assert.equal(Buffer.byteLength(tail), BLOCK);
      const file = await fileWith(`head\n${tail}`);
      assert.equal(await tailLines(file, 2), tail);
      assert.equal(await tailLines(file, 3), `head\n${tail}`);
    });

    test("the line count is exact whatever the block holds", async () => {
      const file = await fileWith(content);
      for (const wanted of [1, 10, 1_000, 1_771, 19_999, 20_000]) {
        const got = await tailLines(file, wanted);
        assert.equal(got.split("\n").length - 1, wanted, `${wanted} lines`);
        assert.ok(got === `${lines.slice(-wanted).join("\n")}\n`, `${wanted} lines are the last ones`);
      }
    });
  });

  describe("maxBytes", () => {
    test("reads at most maxBytes from the end", async () => {
      const file = await fileWith("aaaa\nbbbb\ncccc\n");
      assert.equal(await tailLines(file, 0, 10), "bbbb\ncccc\n");
      assert.equal(await tailLines(file, 10, 10), "bbbb\ncccc\n");
    });

    test("a cut inside a line keeps the partial line", async () => {
      const file = await fileWith("aaaa\nbbbb\ncccc\n");
      assert.equal(await tailLines(file, 0, 7), "b\ncccc\n");
    });

    test("lines wanted inside the limit are unaffected by it", async () => {
      const file = await fileWith("aaaa\nbbbb\ncccc\n");
      assert.equal(await tailLines(file, 1, 10), "cccc\n");
    });
  });

  test("multi-byte characters are kept whole", async () => {
    const file = await fileWith("héllo\nwörld €\n日本語\n");
    assert.equal(await tailLines(file, 2), "wörld €\n日本語\n");
  });

  test("a multi-byte character split across two blocks is kept whole", async () => {
    // "€" is 3 bytes; put its first byte just before the last block and the other two inside it.
    const after = `${"x".repeat(BLOCK - 2 - "\nlast\n".length)}\nlast\n`;
    const line = `€${after.slice(0, after.indexOf("\n"))}`;
    const file = await fileWith(`head\n€${after}`);
    assert.equal(Buffer.byteLength(`€${after}`) - BLOCK, 1, "the € starts one byte before the last block");
    const got = await tailLines(file, 2);
    assert.equal(got.slice(0, 4), "€xxx");
    assert.ok(got === `${line}\nlast\n`, "the two last lines, byte for byte");
  });
});
