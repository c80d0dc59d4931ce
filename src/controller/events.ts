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
  publish(event: object): Promise<void>;
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
    return Promise.all([...new Set(hostIds)].map((hostId) => this.send({ type: "vms-changed", payload: { hostId } }))).then(() => undefined);
  }

  /** A host was connected or disconnected through Virtumancer's API. */
  hostConnectionChanged(hostId: string, connected: boolean): Promise<void> {
    return this.send({ type: "host-connection-changed", payload: { hostId, connected } });
  }

  envsChanged(envId: string): Promise<void> {
    return this.send({ type: "envs-changed", payload: { envId } });
  }

  /** Calls `listener` with each fleet event (from this process and the others); returns the unsubscribe. */
  subscribe(listener: (event: FleetEvent) => void): () => void {
    return this.channel.subscribe((event) => {
      if (typeof event === "object" && event !== null && EVENT_TYPES.has((event as { type?: string }).type ?? "")) listener(event as FleetEvent);
    });
  }

  /** An event that cannot be sent is logged: the change itself is stored, clients see it on their next read. */
  private async send(event: FleetEvent): Promise<void> {
    try {
      await this.channel.publish(event);
    } catch (err) {
      this.log.warn({ err, event: event.type }, "Cannot publish a fleet event");
    }
  }
}
