// Server-Sent Events as `/fs/watch` speaks them: the agent frames, the daemon relays bytes untouched, the SDK
// parses. Framing follows the HTML living standard's event-stream format.

export interface SseMessage {
  id?: string;
  event?: string;
  data: string;
}

/** One event block: `id:`, `event:`, one `data:` line per line of data, then a blank line. */
export function formatSseEvent(message: SseMessage): string {
  let text = "";
  if (message.id !== undefined) text += `id: ${singleLine(message.id)}\n`;
  if (message.event !== undefined) text += `event: ${singleLine(message.event)}\n`;
  for (const line of message.data.split(/\r\n|\r|\n/)) text += `data: ${line}\n`;
  return `${text}\n`;
}

/** A comment line (clients ignore it): heartbeats, and the line that says the watch is in place. */
export function formatSseComment(text: string): string {
  return `${text
    .split(/\r\n|\r|\n/)
    .map((line) => `: ${line}`)
    .join("\n")}\n\n`;
}

function singleLine(value: string): string {
  return value.replace(/[\r\n]/g, " ");
}

/**
 * Incremental parser: feed text as it arrives, get complete events back. Comments are dropped; a block
 * without data is not an event (as the standard says).
 */
export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private id: string | undefined;
  private event: string | undefined;

  push(chunk: string): SseMessage[] {
    this.buffer += chunk;
    const messages: SseMessage[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      // A lone "\r" at the end may be the first half of "\r\n": wait for more.
      if (!match || (match[0] === "\r" && match.index === this.buffer.length - 1)) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const message = this.line(line);
      if (message) messages.push(message);
    }
    return messages;
  }

  private line(line: string): SseMessage | undefined {
    if (line === "") {
      const message = this.data.length > 0 ? { id: this.id, event: this.event, data: this.data.join("\n") } : undefined;
      this.data = [];
      this.event = undefined;
      return message;
    }
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.id = value;
    else if (field === "event") this.event = value;
    return undefined;
  }
}
