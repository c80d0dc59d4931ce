// Saving a VM's state (RAM and devices) to a file and loading it back, through QEMU's migration stream.
// QEMU sends to (or reads from) a unix socket that we serve, and we move the bytes to or from the file:
// no shell commands, no quoting of paths.
import { createReadStream, createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import type { QmpClient } from "./qmp-client.ts";

export class MigrationError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "MigrationError";
  }
}

/** Serves one connection on `socketPath`, handing it to `handle`; resolves with the server and the transfer. */
async function serveOnce(socketPath: string, handle: (socket: Socket) => Promise<void>): Promise<{ server: Server; transfer: Promise<void> }> {
  await rm(socketPath, { force: true });
  let settle!: { resolve: () => void; reject: (err: Error) => void };
  const transfer = new Promise<void>((resolve, reject) => {
    settle = { resolve, reject };
  });
  const server = createServer((socket) => {
    server.close();
    handle(socket).then(settle.resolve, settle.reject);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => resolve());
  });
  return { server, transfer };
}

/**
 * Polls query-migrate until the migration completed; throws on failure or at the deadline. The interval
 * starts at 1 ms and doubles up to 20 ms: a template's state loads in a few milliseconds, a suspended VM's
 * RAM takes seconds.
 */
async function waitForMigration(qmp: QmpClient, deadlineMs: number): Promise<void> {
  const deadline = performance.now() + deadlineMs;
  let interval = 1;
  for (;;) {
    const info = await qmp.queryMigrate();
    if (info.status === "completed") return;
    if (info.status === "failed" || info.status === "cancelled") {
      throw new MigrationError(`Migration ${info.status}${info["error-desc"] ? `: ${info["error-desc"]}` : ""}`);
    }
    if (performance.now() > deadline) throw new MigrationError(`Migration did not complete in time (status ${info.status ?? "not started"})`);
    await sleep(interval);
    interval = Math.min(interval * 2, 20);
  }
}

/**
 * Writes the (stopped) VM's state to `file`. The caller stops the vCPUs first so the state is consistent
 * with the disk it will be restored next to.
 */
export async function saveVmState(qmp: QmpClient, file: string, socketPath: string, deadlineMs = 10 * 60_000): Promise<void> {
  // The default bandwidth cap exists for live migration across a network; here it only slows a local copy.
  await qmp.migrateSetParameters({ "max-bandwidth": 64 * 1024 * 1024 * 1024 });
  const { server, transfer } = await serveOnce(socketPath, (socket) => pipeline(socket, createWriteStream(file, { mode: 0o600 })));
  // Settled into a value at once: if the migration fails first, a failed transfer must not be left to
  // reject unobserved (that would be an unhandled rejection).
  const written = transfer.then(
    () => undefined,
    (err: unknown) => err,
  );
  try {
    await qmp.migrate(`unix:${socketPath}`);
    await waitForMigration(qmp, deadlineMs);
    // The file must hold everything QEMU sent: here the transfer's outcome is the verdict.
    const failure = await written;
    if (failure !== undefined) throw new MigrationError(`Cannot write the state to ${file}: ${(failure as Error).message}`, { cause: failure });
  } finally {
    server.close();
    await rm(socketPath, { force: true });
  }
}

/** Connects to a unix socket, retrying while it does not exist yet (QEMU creates it asynchronously). */
async function connectWhenListening(socketPath: string, deadlineMs: number): Promise<Socket> {
  const deadline = performance.now() + deadlineMs;
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const socket = connect(socketPath);
        socket.once("connect", () => resolve(socket));
        socket.once("error", reject);
      });
    } catch (err) {
      if (performance.now() > deadline) throw new MigrationError(`QEMU did not open ${socketPath} for the incoming state`, { cause: err });
      await sleep(1);
    }
  }
}

/**
 * Feeds `file` to a QEMU started with `-incoming defer`; resolves when the state is loaded (vCPUs stopped).
 * For an incoming migration QEMU listens on the unix address itself, so here we are the client.
 */
export async function loadVmState(qmp: QmpClient, file: string, socketPath: string, deadlineMs = 10 * 60_000): Promise<void> {
  await rm(socketPath, { force: true });
  await qmp.migrateIncoming(`unix:${socketPath}`);
  const socket = await connectWhenListening(socketPath, 10_000);
  socket.on("error", () => undefined); // QEMU may close its end as soon as it has what it needs
  // How the sending ends says nothing: QEMU closes its end once it has read what it needs, which shows here
  // as EPIPE, a reset or a "premature close" depending on timing. QEMU's migration status is the verdict;
  // a sending error only explains a failure. (Never left to reject on its own: that would be unhandled.)
  let sendError: unknown;
  const sent = pipeline(createReadStream(file), socket).catch((err: unknown) => {
    sendError = err;
  });
  try {
    await waitForMigration(qmp, deadlineMs).catch((err: unknown) => {
      throw sendError === undefined ? err : new MigrationError(`${(err as Error).message} (sending the state: ${(sendError as Error).message})`, { cause: err });
    });
    await sent;
  } finally {
    socket.destroy();
    await rm(socketPath, { force: true });
  }
}
