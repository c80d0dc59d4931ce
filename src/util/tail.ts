// Reading the end of a log file without loading all of it.
import { open, type FileHandle } from "node:fs/promises";

const BLOCK = 64 * 1024;

/**
 * The last `lines` lines of `file` (all of it when `lines` is 0), at most `maxBytes` from its end.
 * A missing file reads as empty.
 */
export async function tailLines(file: string, lines: number, maxBytes = 16 * 1024 * 1024): Promise<string> {
  let handle: FileHandle;
  try {
    handle = await open(file, "r");
  } catch {
    return "";
  }
  try {
    const { size } = await handle.stat();
    const floor = Math.max(0, size - maxBytes);
    let start = size;
    const blocks: Buffer[] = [];
    let newlines = 0;
    while (start > floor) {
      const from = Math.max(floor, start - BLOCK);
      const buffer = Buffer.alloc(start - from);
      await handle.read(buffer, 0, buffer.length, from);
      blocks.unshift(buffer);
      start = from;
      // One newline more than wanted, since the file usually ends with one.
      for (const byte of buffer) if (byte === 0x0a) newlines++;
      if (lines > 0 && newlines > lines) break;
    }
    // Decoded once, so a character split between two blocks stays whole.
    const text = Buffer.concat(blocks).toString("utf8");
    if (lines === 0) return text;
    const all = text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
    const kept = all.slice(-lines).join("\n");
    return text.endsWith("\n") ? `${kept}\n` : kept;
  } finally {
    await handle.close();
  }
}
