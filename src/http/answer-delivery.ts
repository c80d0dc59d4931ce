// Whether an answer reached its client: for operations that must not outlive a client who never heard of
// them (a create whose client gave up). "Delivered" means the whole answer was handed to the connection
// (the response's `finish`); a connection that closed before that, by the client leaving or by a write
// that failed, means the client cannot have read it.
import type { ServerResponse } from "node:http";
import { CorralError } from "../protocol/errors.ts";

export interface AnswerDelivery {
  /** Aborted, with a `client_closed_request` CorralError as its reason, once the client is gone unanswered. */
  readonly abandoned: AbortSignal;
  /** Settles when the connection is done with the answer: true if all of it was written, false if not. */
  readonly delivered: Promise<boolean>;
}

/** Watches `res` from now on; call it when the request arrives, before the work it asks for starts. */
export function watchDelivery(res: ServerResponse): AnswerDelivery {
  const controller = new AbortController();
  // "finish" normally means the last byte was handed to the kernel, but Node emits it (and reports
  // `writableFinished`) also when a socket that still held part of the answer is destroyed: only a finish on
  // a socket still whole counts.
  const socket = res.socket;
  let finished = false;
  res.once("finish", () => (finished = socket !== null && !socket.destroyed && !socket.errored));
  const delivered = new Promise<boolean>((resolve) => {
    const settle = (): void => {
      const written = finished;
      if (!written) {
        controller.abort(new CorralError("client_closed_request", "The client closed the connection before it was answered"));
      }
      resolve(written);
    };
    // A client that left while the request was still being read: its response is already destroyed and
    // will not emit "close" again.
    if (res.destroyed || socket === null || socket.destroyed) settle();
    else res.once("close", settle);
  });
  return { abandoned: controller.signal, delivered };
}
