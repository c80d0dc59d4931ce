// Creates as their client sees them: all or nothing. A VM made for a request (a Slicer create, a fork, a
// TTstack agent create) exists for good only once its answer is written to the client; a client that
// leaves first (during the clone or boot, during `?wait=`) or whose answer cannot be written gets its VM
// removed at once, and one that a crash leaves unanswered is removed by recovery (the store's
// `acknowledged` mark).
//
// The mark is set in the same synchronous step in which the answer's last byte is handed to the socket
// (the response's "prefinish"), before the event loop runs anything else: a client cannot have read its 201
// while the mark is still unset, so a crash never removes a VM whose create was answered. (Setting it on
// "finish", when the write completed, left a window in which a client that had its answer saw the VM vanish
// after a crash: seen on a loaded host.) A write that then fails (the connection closed before the answer
// was flushed) still removes the VM.
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
 * Makes a VM for the request `reply` answers, waits as asked, and arranges for the VM to be acknowledged
 * once the answer is written or removed if it is not. Resolves with the record to answer with; on any
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
  // Only the successful answer sets the mark: an error answered in its place (e.g. serialisation) never does.
  let acknowledged = false;
  const acknowledge = (): void => {
    if (acknowledged || reply.raw.statusCode >= 300) return;
    acknowledged = true;
    if (!manager.acknowledgeCreate(record)) reply.log.error({ vm: record.hostname, created_at: record.createdAt }, "The answered create's VM was not found to acknowledge");
  };
  reply.raw.once("prefinish", acknowledge);
  void delivery.delivered
    .then((written) => {
      if (!written) return manager.rollBackCreate(record, delivery.abandoned.reason);
      // A whole answer always passes "prefinish" first; should it not have, the mark is still set now.
      if (!acknowledged) reply.log.warn({ vm: record.hostname }, "A create's answer was written without its prefinish step");
      acknowledge();
      return undefined;
    })
    .catch((err: unknown) => reply.log.error({ vm: record.hostname, err }, "Cannot settle a create after its answer"));
  return record;
}
