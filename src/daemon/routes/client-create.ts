// Creates as their client sees them: all or nothing. A VM made for a request (a Slicer create, a fork, a
// TTstack agent create) exists for good only once it is acknowledged; a client that leaves first (during the
// clone or boot, during `?wait=`) or whose answer cannot be written gets its VM removed at once, and one that
// a crash leaves unacknowledged is removed by recovery (the store's `acknowledged` mark).
//
// The mark is set before the answer is handed to the socket, never after: once the bytes are with the
// kernel the client may read its 201 and act (kill the daemon, as the lifetime test does) before this
// process runs again, so a mark set in the response's "prefinish" could be lost with a VM the client was
// told about (seen in CI on a loaded 2-core host: recovery removed a VM "whose create was never answered").
// The opposite window remains and is the lesser harm: a crash between the mark and the write keeps a VM
// whose client got no answer. An answer that then fails to be written (the connection closed, or an error
// status written in its place) still removes the VM.
import type { FastifyReply } from "fastify";
import { watchDelivery } from "../../http/answer-delivery.ts";
import { crashPoint } from "../../util/crash-points.ts";
import { CorralError } from "../../protocol/errors.ts";
import type { VmManager } from "../vm/vm-manager.ts";
import type { VmRecord } from "../vm/vm-store.ts";
import { waitAsAsked, type WaitRequest } from "./waiting.ts";

export interface ClientCreate {
  /** Makes the VM; `signal` aborts when the client is gone. */
  make: (signal: AbortSignal) => Promise<VmRecord>;
  /** What to wait for before answering (none: answer once QEMU runs). */
  waiting?: WaitRequest;
  /** The 408 message's ending when the wait times out (the VM is removed either way). */
  timeoutOutcome?: string;
}

/**
 * Makes a VM for the request `reply` answers, waits as asked, acknowledges it before the answer is
 * written, and removes it if the answer is not. Resolves with the record to answer with; on any
 * failure (the client left, the wait failed) the VM is gone before the error is thrown.
 */
export async function createForClient(manager: VmManager, reply: FastifyReply, create: ClientCreate): Promise<VmRecord> {
  const delivery = watchDelivery(reply.raw);
  const record = await create.make(delivery.abandoned);
  try {
    if (create.waiting?.wait) crashPoint("create.waiting");
    await waitAsAsked(manager, record.hostname, create.waiting ?? { wait: undefined, timeoutMs: 0 }, undefined, delivery.abandoned);
    delivery.abandoned.throwIfAborted();
    crashPoint("create.ready");
  } catch (err) {
    await manager.rollBackCreate(record, err).catch(() => undefined);
    if (err instanceof CorralError && err.code === "timeout" && create.timeoutOutcome) throw new CorralError("timeout", `${err.message}: ${create.timeoutOutcome}`);
    throw err;
  }
  if (!manager.acknowledgeCreate(record)) reply.log.error({ vm: record.hostname, created_at: record.createdAt }, "The created VM was not found to acknowledge");
  void delivery.delivered
    .then((written) => {
      // An error answered in the success's place (e.g. serialisation) is no answer to the create either.
      if (!written) return manager.rollBackCreate(record, delivery.abandoned.reason);
      if (reply.raw.statusCode >= 300) return manager.rollBackCreate(record, new Error(`the create was answered with ${reply.raw.statusCode}`));
      return undefined;
    })
    .catch((err: unknown) => reply.log.error({ vm: record.hostname, err }, "Cannot settle a create after its answer"));
  return record;
}
