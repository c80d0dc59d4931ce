// The expiry reaper: every VM whose `expires_at` has passed is deleted. Expiries live in the VM store, so
// they survive daemon restarts; the manager runs one sweep at start (an expiry that passed while no daemon
// ran is applied before the API serves) and then one per interval.
import type { Logger } from "../../util/log.ts";
import type { VmRecord, VmStore } from "./vm-store.ts";

export interface ExpiryReaperDeps {
  store: VmStore;
  /** Deletes one expired VM (the manager re-checks under the VM's lock that it is still due). */
  expire: (record: VmRecord, now: Date) => Promise<void>;
  log: Logger;
  now?: () => Date;
  /** How often to look (default a second: an expiry is applied within about that much of its time). */
  intervalMs?: number;
}

export class ExpiryReaper {
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;

  constructor(private readonly deps: ExpiryReaperDeps) {}

  /** Deletes every VM due now, one at a time; a failure is logged and retried at the next sweep. */
  sweep(): Promise<void> {
    if (this.sweeping) return this.sweeping;
    const sweeping = this.expireDue()
      .catch((err: unknown) => this.deps.log.error({ err }, "Cannot look for expired VMs: trying again"))
      .finally(() => {
        if (this.sweeping === sweeping) this.sweeping = undefined;
      });
    this.sweeping = sweeping;
    return sweeping;
  }

  private async expireDue(): Promise<void> {
    const now = (this.deps.now ?? (() => new Date()))();
    for (const record of this.deps.store.listExpired(now)) {
      await this.deps.expire(record, now).catch((err: unknown) => this.deps.log.error({ vm: record.hostname, err }, "Cannot delete an expired VM: trying again"));
    }
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.sweep(), this.deps.intervalMs ?? 1000);
    this.timer.unref();
  }

  /** Stops looking and waits for a sweep in progress. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.sweeping;
  }
}
