// Brings each VM's /run/corral/secrets in line with the store: when its agent becomes ready (boot, restore,
// daemon restart) and after every change while it runs. The guest lists what it holds with digests, so
// only what differs travels. One sync per VM at a time; a change during a sync makes it run once more, so
// the last sync always reflects the latest state.
import type { GuestSecretEntry, GuestSecretMeta } from "../../protocol/secrets.ts";
import { SECRET_AGENT_PATHS, SECRET_META_HEADER } from "../../protocol/secrets.ts";
import type { Logger } from "../../util/log.ts";
import type { AgentClient } from "../agent/agent-client.ts";
import type { AgentReadyHook, VmManager } from "../vm/vm-manager.ts";
import type { SecretStore } from "./secret-store.ts";
import { headerJson } from "../../protocol/agent.ts";

/** How long a live update may take per VM before it is given up (the VM gets it at its next reconnect). */
const PUSH_DEADLINE_MS = 60_000;

interface SyncSlot {
  again: boolean;
  agent: AgentClient;
  done: Promise<void>;
}

export class SecretDelivery {
  private readonly slots = new Map<string, SyncSlot>();

  constructor(
    private readonly store: SecretStore,
    private readonly vms: Pick<VmManager, "readyAgents">,
    private readonly log: Logger,
  ) {}

  /** The agent-ready hook: a VM holds exactly the stored secrets before it counts as ready. */
  readonly deliverOnReady: AgentReadyHook = async (hostname, agent, signal, { fresh }) => {
    // A new VM holds no secrets: with none stored there is nothing to compare or send (a round trip saved
    // on every create). Checked and returned in one step, so no change can slip in between.
    if (fresh && this.store.list().length === 0) return;
    // This VM is not among the ready ones yet, so live pushes skip it: go round until nothing changed.
    for (;;) {
      const seen = this.store.generation;
      await this.sync(hostname, agent, signal);
      if (this.store.generation === seen) return;
    }
  };

  /** After a change: updates every running VM in the background; failures are logged, never lost data. */
  pushToRunningVms(): void {
    for (const { hostname, agent } of this.vms.readyAgents()) {
      this.sync(hostname, agent, AbortSignal.timeout(PUSH_DEADLINE_MS)).catch((err: unknown) =>
        this.log.warn({ vm: hostname, err }, "Cannot update the secrets of a VM: it gets them when its agent next connects"),
      );
    }
  }

  /** Resolves once this VM was synced at least once after the call. */
  private sync(hostname: string, agent: AgentClient, signal: AbortSignal): Promise<void> {
    const running = this.slots.get(hostname);
    if (running) {
      running.again = true;
      running.agent = agent;
      return running.done;
    }
    const slot: SyncSlot = { again: true, agent, done: Promise.resolve() };
    slot.done = (async () => {
      try {
        while (slot.again) {
          slot.again = false;
          await this.syncOnce(slot.agent, signal);
        }
      } finally {
        this.slots.delete(hostname);
      }
    })();
    this.slots.set(hostname, slot);
    return slot.done;
  }

  private async syncOnce(agent: AgentClient, signal: AbortSignal): Promise<void> {
    const present = new Map((await agent.callJson<GuestSecretEntry[]>("GET", SECRET_AGENT_PATHS.secrets, { signal })).map((e) => [e.name, e]));
    const wanted = this.store.list();
    for (const header of wanted) {
      const have = present.get(header.name);
      if (have && have.sha256 === header.sha256 && have.permissions === header.permissions && have.uid === header.uid && have.gid === header.gid) continue;
      const secret = await this.store.read(header.name).catch(() => undefined);
      if (!secret) continue; // removed meanwhile: that change brings its own sync
      const meta: GuestSecretMeta = { permissions: secret.header.permissions, uid: secret.header.uid, gid: secret.header.gid };
      await agent.callJson("PUT", SECRET_AGENT_PATHS.secret(header.name), { headers: { [SECRET_META_HEADER]: headerJson(meta) }, body: secret.data, signal });
    }
    const names = new Set(wanted.map((h) => h.name));
    for (const name of present.keys()) {
      if (!names.has(name)) await agent.callJson("DELETE", SECRET_AGENT_PATHS.secret(name), { signal });
    }
  }
}
