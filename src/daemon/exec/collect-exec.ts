// buffered=true: reads the whole frame stream into one result. Output beyond the limit is dropped and the
// result says `truncated`, so a chatty command cannot exhaust the daemon's memory.
import type { ClientHttp2Stream } from "node:http2";
import type { BufferedExecResult, ExecFrame, ExecStdio } from "../../protocol/agent.ts";
import { EXIT_LOST } from "./exec-relay.ts";

export const BUFFERED_OUTPUT_LIMIT = 16 * 1024 * 1024;

class OutputBuffer {
  private readonly parts: Buffer[] = [];
  private size = 0;
  truncated = false;

  constructor(private readonly limit: number) {}

  add(part: Buffer): void {
    if (this.size + part.length > this.limit) {
      this.truncated = true;
      part = part.subarray(0, Math.max(0, this.limit - this.size));
    }
    if (part.length === 0) return;
    this.parts.push(part);
    this.size += part.length;
  }

  text(stdio: ExecStdio): string {
    const all = Buffer.concat(this.parts);
    return stdio === "base64" ? all.toString("base64") : all.toString("utf8");
  }
}

export async function collectExec(source: ClientHttp2Stream, stdio: ExecStdio, limit = BUFFERED_OUTPUT_LIMIT): Promise<BufferedExecResult> {
  const stdout = new OutputBuffer(limit);
  const stderr = new OutputBuffer(limit);
  let exit: ExecFrame | undefined;
  let started: ExecFrame | undefined;
  let pending = "";
  let malformed = 0;
  const take = (line: string): void => {
    if (!line.trim()) return;
    let frame: ExecFrame;
    try {
      frame = JSON.parse(line) as ExecFrame;
    } catch {
      malformed++; // not ours to interpret; keep reading for the exit frame
      return;
    }
    const decode = (text: string): Buffer => Buffer.from(text, frame.encoding === "base64" ? "base64" : "utf8");
    if (frame.type === "stdout") stdout.add(decode(frame.stdout));
    else if (frame.type === "stderr") stderr.add(decode(frame.stderr));
    else if (frame.type === "started") started = frame;
    else if (frame.type === "exit") exit = frame;
  };
  let failure: string | undefined;
  // A reset can arrive after the loop below has seen the end; without a listener it would crash the daemon.
  source.on("error", () => undefined);
  try {
    source.setEncoding("utf8");
    for await (const chunk of source as AsyncIterable<string>) {
      pending += chunk;
      let end = pending.indexOf("\n");
      while (end >= 0) {
        take(pending.slice(0, end));
        pending = pending.slice(end + 1);
        end = pending.indexOf("\n");
      }
    }
    take(pending);
  } catch (err) {
    failure = `The connection to the guest agent failed: ${(err as Error).message}`;
  }
  const result: BufferedExecResult = {
    stdout: stdout.text(stdio),
    stderr: stderr.text(stdio),
    exit_code: exit?.exit_code ?? EXIT_LOST,
  };
  if (stdio === "base64") result.encoding = "base64";
  if (started?.pid !== undefined) result.pid = started.pid;
  if (started?.started_at) result.started_at = started.started_at;
  if (exit?.ended_at) result.ended_at = exit.ended_at;
  if (exit?.signal) result.signal = exit.signal;
  const error =
    exit?.error ?? (exit ? undefined : (failure ?? `The connection to the guest agent ended before the command did${malformed ? ` (${malformed} unreadable lines)` : ""}`));
  if (error) result.error = error;
  if (stdout.truncated || stderr.truncated) result.truncated = true;
  return result;
}
