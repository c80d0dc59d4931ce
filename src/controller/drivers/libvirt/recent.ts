// Answers from a libvirt host kept for a short while, so that the calls made together (a heartbeat asks for
// the host's report and its VMs at once, each needing every domain's stats) share one virsh call, and what
// hardly changes (the host's name, CPUs, memory, storage pools) is not asked for every heartbeat. Each virsh
// call through qemu+ssh is an ssh connection (~0.4-0.5 s here): this is what keeps a heartbeat to one or two.
// A failed call is not kept; `forget` drops what an action made stale.
export class Recent {
  private readonly entries = new Map<string, { until: number; value: Promise<unknown> }>();

  constructor(private readonly now: () => number = Date.now) {}

  /** `load()`'s answer, shared with every caller until `ttlMs` after it was asked for. */
  get<T>(key: string, ttlMs: number, load: () => Promise<T>): Promise<T> {
    const known = this.entries.get(key);
    if (known && known.until > this.now()) return known.value as Promise<T>;
    const value = load();
    const entry = { until: this.now() + ttlMs, value };
    this.entries.set(key, entry);
    value.catch(() => {
      if (this.entries.get(key) === entry) this.entries.delete(key);
    });
    return value;
  }

  forget(key: string): void {
    this.entries.delete(key);
  }
}
