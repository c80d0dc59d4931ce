// The host half of the agent handshake (see HANDSHAKE_HELLO in src/protocol/agent.ts): connect to the VM's
// agent socket, say HELLO with a fresh nonce, and skip everything until the agent's matching READY line.
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { HANDSHAKE_HELLO, HANDSHAKE_READY } from "../../protocol/agent.ts";

const MAX_SKIPPED = 1024 * 1024;

export class HandshakeError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "HandshakeError";
  }
}

export interface Handshaken {
  socket: Socket;
  agentVersion: string;
}

/**
 * Resolves once the agent answered; the socket is paused with nothing consumed past the READY line, ready for
 * HTTP/2. Rejects when the socket closes or fails, or when `signal` aborts (the caller's deadline).
 */
export function agentHandshake(socketPath: string, signal: AbortSignal): Promise<Handshaken> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new HandshakeError("Agent handshake aborted before it started"));
    const nonce = randomBytes(16).toString("hex");
    const expected = `${HANDSHAKE_READY} ${nonce} `;
    const socket = connect(socketPath);
    let received = "";
    let settled = false;

    const cleanup = (): void => {
      settled = true;
      signal.removeEventListener("abort", onAbort);
      socket.off("data", onData);
      socket.off("error", onError);
      socket.off("close", onClose);
    };
    const fail = (err: Error): void => {
      if (settled) return;
      cleanup();
      socket.destroy();
      reject(err);
    };
    const onAbort = (): void => fail(new HandshakeError("Agent did not answer the handshake in time"));
    const onError = (err: Error): void => fail(new HandshakeError(`Cannot reach the agent socket: ${err.message}`, { cause: err }));
    const onClose = (): void => fail(new HandshakeError("Agent socket closed during the handshake"));
    const onData = (chunk: Buffer): void => {
      received += chunk.toString("latin1");
      const at = received.indexOf(expected);
      if (at < 0) {
        if (received.length > MAX_SKIPPED) received = received.slice(-expected.length);
        return;
      }
      const end = received.indexOf("\n", at);
      if (end < 0) return;
      const agentVersion = received.slice(at + expected.length, end).trim();
      const rest = Buffer.from(received.slice(end + 1), "latin1");
      cleanup();
      socket.pause();
      if (rest.length > 0) socket.unshift(rest);
      resolve({ socket, agentVersion });
    };

    signal.addEventListener("abort", onAbort, { once: true });
    socket.on("data", onData);
    socket.on("error", onError);
    socket.on("close", onClose);
    socket.write(`${HANDSHAKE_HELLO} ${nonce}\n`);
  });
}
