// Giving up on a request to the guest agent: how a cut is signalled on the agent's HTTP/2 session.
import type { ClientHttp2Session, ClientHttp2Stream, OutgoingHttpHeaders } from "node:http2";

/** A request to the agent together with the one way to cut it. */
export interface CancellableRequest {
  stream: ClientHttp2Stream;
  /** Resets the request with RST_STREAM(CANCEL) alone; see cancelRequest. */
  cancel(): void;
}

/**
 * Opens a request that can be cut. Each request gets its own AbortController, passed as `signal`: aborting it
 * has node destroy the stream with its AbortError, which sends RST_STREAM(CANCEL) and never ends the body.
 */
export function openCancellableRequest(session: ClientHttp2Session, headers: OutgoingHttpHeaders, options: { endStream: boolean }): CancellableRequest {
  const cut = new AbortController();
  const stream = session.request(headers, { endStream: options.endStream, signal: cut.signal });
  return { stream, cancel: () => cancelRequest(stream, cut) };
}

/**
 * Resets a request with RST_STREAM(CANCEL) alone. Not stream.close(NGHTTP2_CANCEL): close() ends the request
 * body first, and when the agent has kept up with the body (its flow-control window open, nothing queued) the
 * END_STREAM leaves before the RST_STREAM, so the agent reads a cut body as a complete one: an upload is put
 * in place, a command reads the end of its stdin and goes on, a forwarded socket is half-closed. Not
 * stream.destroy() either: without an error that resets with NO_ERROR, which node on the agent's side also
 * turns into the end of the body. The stream then fails with node's AbortError; whoever cancels it no longer
 * reads it.
 */
function cancelRequest(stream: ClientHttp2Stream, cut: AbortController): void {
  if (stream.destroyed) return;
  stream.on("error", () => undefined);
  cut.abort();
}
