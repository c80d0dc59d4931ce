// Moving a request body into a writer (a file, a tar extractor) with backpressure, without ever destroying
// the body: when the body is one half of an HTTP/2 stream, the other half must stay able to answer, with
// an error if the write failed.
import type { Readable } from "node:stream";

/** The part of a writable stream (node's or streamx's) a pump uses. */
export interface PumpSink {
  write(chunk: Buffer): boolean;
  end(chunk?: undefined): unknown;
  on(event: "drain" | "close" | "error", listener: (arg?: unknown) => void): unknown;
  off(event: "drain" | "close" | "error", listener: (arg?: unknown) => void): unknown;
}

/**
 * Resolves once `source` ended and `sink.end()` was called (the caller waits for the sink to finish). Rejects
 * when the source fails or is cut off before its end, or when the sink fails or closes first; `source` is
 * then left paused, not destroyed.
 */
export function pump(source: Readable, sink: PumpSink): Promise<void> {
  // A source destroyed before the pump started has emitted its "close" already and emits nothing more: without
  // this the pump would wait forever (an upload the host reset while the agent was still opening its file).
  if (source.destroyed && !source.readableEnded) {
    return Promise.reject(source.errored ?? new Error("The body ended before it was complete"));
  }
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      if (!sink.write(chunk)) source.pause();
    };
    const onDrain = (): void => {
      source.resume();
    };
    const settle = (err: Error | undefined): void => {
      source.off("data", onData);
      source.off("end", onEnd);
      source.off("error", onSourceError);
      source.off("close", onSourceClose);
      sink.off("drain", onDrain);
      sink.off("error", onSinkError);
      sink.off("close", onSinkClose);
      if (err) {
        source.pause();
        reject(err);
      } else {
        sink.end();
        resolve();
      }
    };
    const onEnd = (): void => settle(undefined);
    const onSourceError = (err: unknown): void => settle(err instanceof Error ? err : new Error(String(err)));
    const onSourceClose = (): void => settle(new Error("The body ended before it was complete"));
    const onSinkError = (err: unknown): void => settle(err instanceof Error ? err : new Error(String(err)));
    const onSinkClose = (): void => settle(new Error("The writer closed before the body was complete"));
    source.on("data", onData);
    source.on("end", onEnd);
    source.on("error", onSourceError);
    source.on("close", onSourceClose);
    sink.on("drain", onDrain);
    sink.on("error", onSinkError);
    sink.on("close", onSinkClose);
    source.resume();
  });
}
