// Sends a job's log as NDJSON: the frames after the reader's place, a gap frame where the ring has already
// dropped some, and with `follow` everything new until the job's exit frame. Writes wait for the host to
// read (backpressure); waiting for new output is an event, never a poll.
import { once } from "node:events";
import type { Writable } from "node:stream";
import type { GapFrame, JobLogFrame, JobOutputFrame } from "../../protocol/jobs.ts";
import type { Gap, RingFrame } from "./frame-ring.ts";
import type { BackgroundJob, StoredFrame } from "./background-job.ts";

export function renderFrame(frame: RingFrame<StoredFrame>, base64: boolean): JobOutputFrame {
  const { type, timestamp, output, fields } = frame.value;
  const out: JobOutputFrame = { type, id: frame.id, timestamp, stdout: "", stderr: "", exit_code: 0, ...fields };
  if (output !== undefined && (type === "stdout" || type === "stderr")) {
    out[type] = typeof output === "string" ? output : output.toString("base64");
    if (base64) out.encoding = "base64";
  }
  return out;
}

export function gapFrame(gap: Gap, ringBytes: number): GapFrame {
  const amount = `${gap.exact ? "" : "at least "}${gap.bytes} bytes`;
  return {
    type: "gap",
    id: gap.lastId,
    timestamp: new Date().toISOString(),
    stdout: "",
    stderr: "",
    exit_code: 0,
    dropped_bytes: gap.bytes,
    dropped_frames: gap.frames,
    message: `Output dropped: ${amount} in ${gap.frames} frames are no longer kept (the job keeps the newest ${ringBytes} bytes)`,
  };
}

export interface LogReadOptions {
  /** Send the frames after this id (0: from the start). */
  afterId: number;
  /** Keep sending new frames until the job's exit frame. */
  follow: boolean;
  /** Aborts when the reader went away. */
  signal: AbortSignal;
}

/** Writes the log to `out` (without ending it); resolves when done or when the reader left. */
export async function writeJobLog(job: BackgroundJob, out: Writable, options: LogReadOptions): Promise<void> {
  const { signal, follow } = options;
  const base64 = job.spec.stdio === "base64";
  const send = async (frame: JobLogFrame): Promise<void> => {
    if (out.write(`${JSON.stringify(frame)}\n`)) return;
    await once(out, "drain", { signal }).catch(() => undefined); // rejects when the reader leaves
  };
  let cursor = options.afterId;
  while (!signal.aborted) {
    const step = job.ring.next(cursor);
    if (step.kind === "gap") {
      await send(gapFrame(step.gap, job.ring.capacity));
      cursor = step.gap.lastId;
    } else if (step.kind === "frame") {
      await send(renderFrame(step.frame, base64));
      cursor = step.frame.id;
    } else {
      // Caught up. The exit frame is appended as the job turns "exited", so by now it has been sent.
      if (!follow || job.ring.closed || !job.running) return;
      await job.ring.changed(signal);
    }
  }
}
