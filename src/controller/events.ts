// What changed in the fleet, told to every /ws client of every controller process on the same database:
// events go through the store (PostgreSQL NOTIFY, or in-process with SQLite) and come back to each process,
// which fans them out to its own clients. The payloads are Virtumancer's; `envs-changed` is Corral's own.
// `hosts-changed` means the hosts themselves changed (added, removed, connected, disconnected, offline or
// back); anything that changes on a host (its VMs, what it reports) is `vms-changed` for that host, which
// Virtumancer's UI answers by reading that host's VMs and info again.
import type { WsServerMessage } from "../protocol/controller.ts";
import type { Logger } from "../util/log.ts";

export type FleetEvent = Extract<WsServerMessage, { type: "hosts-changed" | "vms-changed" | "envs-changed" | "host-connection-changed" }>;

interface EventChannel {
  publish(...events: object[]): Promise<void>;
  subscribe(listener: (event: unknown) => void): () => void;
}

const EVENT_TYPES = new Set(["hosts-changed", "vms-changed", "envs-changed", "host-connection-changed"]);

export class FleetEvents {
  constructor(
    private readonly channel: EventChannel,
    private readonly log: Logger,
  ) {}

  hostsChanged(): Promise<void> {
    return this.send({ type: "hosts-changed" });
  }

  vmsChanged(hostIds: Iterable<string>): Promise<void> {
    return this.send(...vmsChangedEvents(hostIds));
  }

  /** A host was connected or disconnected through Virtumancer's API. */
  hostConnectionChanged(hostId: string, connected: boolean): Promise<void> {
    return this.send({ type: "host-connection-changed", payload: { hostId, connected } });
  }

  envsChanged(envId: string): Promise<void> {
    return this.send(envsChangedEvent(envId));
  }

  /**
   * An operation on an environment ended: its hosts' VMs changed, and the environment. The same events as
   * vmsChanged then envsChanged, in that order, sent together (one statement on PostgreSQL).
   */
  envAndVmsChanged(envId: string, hostIds: Iterable<string>): Promise<void> {
    return this.send(...vmsChangedEvents(hostIds), envsChangedEvent(envId));
  }

  /** Calls `listener` with each fleet event (from this process and the others); returns the unsubscribe. */
  subscribe(listener: (event: FleetEvent) => void): () => void {
    return this.channel.subscribe((event) => {
      if (typeof event === "object" && event !== null && EVENT_TYPES.has((event as { type?: string }).type ?? "")) listener(event as FleetEvent);
    });
  }

  /** An event that cannot be sent is logged: the change itself is stored, clients see it on their next read. */
  private async send(...events: FleetEvent[]): Promise<void> {
    if (events.length === 0) return;
    try {
      await this.channel.publish(...events);
    } catch (err) {
      this.log.warn({ err, events: events.map((e) => e.type) }, "Cannot publish fleet events");
    }
  }
}

/** The environment changed (was added, moved state, lost VMs or went): for a store that sends it with its own write (FleetStore.createEnv). */
export function envsChangedEvent(envId: string): FleetEvent {
  return { type: "envs-changed", payload: { envId } };
}

/** One `vms-changed` per host, each host once. */
function vmsChangedEvents(hostIds: Iterable<string>): FleetEvent[] {
  return [...new Set(hostIds)].map((hostId) => ({ type: "vms-changed", payload: { hostId } }));
}
