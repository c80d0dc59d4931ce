// `?wait=agent|userdata&timeout=…`, shared by create, relaunch and restore: parse it before acting, then
// hold the answer until the VM is ready.
import { formatDuration, MAX_DURATION_MS, parseDuration } from "../../protocol/duration.ts";
import { CorralError } from "../../protocol/errors.ts";
import type { Readiness, VmManager } from "../vm/vm-manager.ts";

export const DEFAULT_WAIT_MS = 5 * 60_000;

export interface WaitRequest {
  wait: Readiness | undefined;
  timeoutMs: number;
}

/** Validates the query (a bad timeout is refused even without wait, before anything happens). */
export function parseWait(query: { wait?: Readiness; timeout?: string }): WaitRequest {
  const timeoutMs = query.timeout !== undefined ? parseDuration(query.timeout) : DEFAULT_WAIT_MS;
  if (timeoutMs <= 0 || timeoutMs > MAX_DURATION_MS) throw new CorralError("invalid_duration", 'Invalid timeout: it must be longer than "0s"');
  return { wait: query.wait, timeoutMs };
}

/**
 * Waits as asked. On a timeout, `onTimeout` runs (a create removes its VM) and the answer is 408 saying
 * what `outcome` happened to the VM. When `abandoned` aborts (the client left), the wait ends at once with
 * its reason.
 */
export async function waitAsAsked(
  manager: VmManager,
  hostname: string,
  request: WaitRequest,
  onTimeout?: { run: () => Promise<unknown>; outcome: string },
  abandoned?: AbortSignal,
): Promise<void> {
  if (!request.wait) return;
  const deadline = AbortSignal.timeout(request.timeoutMs);
  try {
    await manager.waitReady(hostname, request.wait, abandoned ? AbortSignal.any([deadline, abandoned]) : deadline);
  } catch (err) {
    if (abandoned?.aborted) throw abandoned.reason;
    if (onTimeout) await onTimeout.run().catch(() => undefined);
    if (err instanceof CorralError && err.code === "timeout") {
      const outcome = onTimeout ? `: ${onTimeout.outcome}` : "";
      throw new CorralError("timeout", `VM "${hostname}" was not ready (${request.wait}) within ${formatDuration(request.timeoutMs)}${outcome}`);
    }
    throw err;
  }
}
