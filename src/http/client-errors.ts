// What a server answers to bytes that are not a valid HTTP/1.1 request (a bad request line, header, chunk
// size or Content-Length, headers over node's 16 KiB, headers that took too long): node's parser fails
// before fastify sees a request, so this writes the answer itself, with the same body as every other error
// ({"error", "code"}), and closes the connection: after a parse error nothing more on it can be trusted.
import { STATUS_CODES, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { ErrorBody } from "../protocol/errors.ts";

interface ParserError extends Error {
  code?: string;
  /** llhttp's own words ("Invalid method encountered"). */
  reason?: string;
}

/** What went wrong, in words, for the parser's error codes a client can cause. */
const PROBLEMS: Record<string, string> = {
  HPE_INVALID_METHOD: "the method is not valid",
  HPE_INVALID_URL: "the request target is not valid",
  HPE_INVALID_VERSION: "the HTTP version is not valid",
  HPE_INVALID_CONSTANT: "the request line is not valid",
  HPE_INVALID_HEADER_TOKEN: "a header name or value holds a character that is not allowed",
  HPE_INVALID_CONTENT_LENGTH: "the Content-Length header is not a number",
  HPE_UNEXPECTED_CONTENT_LENGTH: "Content-Length and Transfer-Encoding are both given",
  HPE_INVALID_TRANSFER_ENCODING: "the Transfer-Encoding header is not valid",
  HPE_INVALID_CHUNK_SIZE: "a chunk size of the chunked body is not valid",
  HPE_CR_EXPECTED: "a line does not end with CRLF",
  HPE_LF_EXPECTED: "a line does not end with CRLF",
  HPE_STRICT: "it breaks the HTTP/1.1 syntax",
  HPE_INVALID_EOF_STATE: "the connection ended in the middle of the request",
};

export function describeClientError(error: ParserError, headersMs: number): { status: number; body: ErrorBody } {
  if (error.code === "ERR_HTTP_REQUEST_TIMEOUT") {
    return { status: 408, body: { error: `The request's headers did not arrive within ${headersMs / 1000} s: the connection is closed`, code: "request_timeout" } };
  }
  if (error.code === "HPE_HEADER_OVERFLOW") {
    return { status: 431, body: { error: "The request's headers are too large: they must fit in 16 KiB", code: "headers_too_large" } };
  }
  const problem = PROBLEMS[error.code ?? ""] ?? (error.reason ? error.reason.replace(/\.$/, "").toLowerCase() : "it could not be parsed");
  return { status: 400, body: { error: `The request is not valid HTTP/1.1: ${problem}`, code: "invalid_request" } };
}

/** A `clientError` listener for node's HTTP server (fastify's clientErrorHandler option). */
export function clientErrorHandler(headersMs: number): (error: ParserError, socket: Socket) => void {
  return (error, socket) => {
    if (error.code === "ECONNRESET" || socket.destroyed) return;
    // A request already answered, or being answered, on this connection: a second answer would corrupt it.
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (!socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const { status, body } = describeClientError(error, headersMs);
    const text = JSON.stringify(body);
    const head = [
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}`,
      "Content-Type: application/json; charset=utf-8",
      `Content-Length: ${Buffer.byteLength(text)}`,
      "Connection: close",
    ];
    socket.end(`${head.join("\r\n")}\r\n\r\n${text}`, () => socket.destroy());
    // A peer that never reads must not keep the socket.
    setTimeout(() => socket.destroy(), 1000).unref();
  };
}
