// Reading the end of a log file without loading all of it.
import { open } from "node:fs/promises";

const BLOCK = 64 * 1024;

/**
 * The last `lines` lines of `file` (all of it when `lines` is 0), at most `maxBytes` from its end.
 * A missing file reads as empty.
 */
export async function tailLines(file: string, lines: number, maxBytes = 16 * 1024 * 1024): Promise<string> {
  let handle;
  try {
    handle = await open(file, "r");
  } catch {
    return "";
  }
  try {
    const { size } = await handle.stat();
    const floor = Math.max(0, size - maxBytes);
    let start = size;
    let text = "";
    while (start > floor) {
      const from = Math.max(floor, start - BLOCK);
      const buffer = Buffer.alloc(start - from);
      await handle.read(buffer, 0, buffer.length, from);
      text = buffer.toString("utf8") + text;
      start = from;
      // One newline more than wanted, since the file usually ends with one.
      if (lines > 0 && (text.match(/\n/g)?.length ?? 0) > lines) break;
    }
    if (lines === 0) return text;
    const all = text.endsWith("\n") ? text.slice(0, -1).split("\n") : text.split("\n");
    const kept = all.slice(-lines).join("\n");
    return text.endsWith("\n") ? `${kept}\n` : kept;
  } finally {
    await handle.close();
  }
}
