// Virtumancer's connect and disconnect of a host (its later POST /api/v1/hosts/ID/connect|disconnect). A
// disconnected host is left alone until it is connected again: no heartbeats, no live stats, no VMs placed
// on it (it is `offline` to every other view, TTstack's included), and the routes on its VMs refuse. The
// environments that already have VMs there still reach it for their own operations (a delete must be able to
// finish). Connecting asks the host first: one that does not answer stays as it was.
import { CorralError, quote } from "../protocol/errors.ts";
import type { FleetStore, HostRecord } from "./db/index.ts";
import type { FleetEvents } from "./events.ts";
import type { HostReport, ReportedVm } from "./host-report.ts";
import { describeHostFailure, type HostDrivers } from "./host-driver.ts";

export class HostConnections {
  constructor(
    private readonly store: FleetStore,
    private readonly drivers: HostDrivers,
    private readonly events: FleetEvents,
  ) {}

  /** Stops talking to the host; nothing happens to a host already disconnected. */
  async disconnect(id: string): Promise<HostRecord> {
    const host = await this.store.getHost(id);
    if (host.disconnected) return host;
    const disconnected = await this.store.updateHost(id, {
      disconnected: true,
      state: "offline",
      failures: 0,
      lastError: `Disconnected through Virtumancer's API: POST /api/v1/hosts/${id}/connect to connect it again`,
    });
    this.drivers.drop(id);
    await this.events.hostConnectionChanged(id, false);
    await this.events.hostsChanged();
    return disconnected;
  }

  /** Asks the host for its report and, if it answers, takes it back as online; 502 if it does not answer. */
  async connect(id: string): Promise<HostRecord> {
    const host = await this.store.getHost(id);
    if (!host.disconnected && host.state === "online") return host;
    const driver = this.drivers.forHost(host);
    let info: HostReport;
    let vms: ReportedVm[];
    try {
      [info, vms] = await Promise.all([driver.info(), driver.vms()]);
    } catch (err) {
      throw new CorralError(
        "host_unreachable",
        `Cannot connect host ${quote(id)}: ${host.uri} did not answer${host.kind === "libvirt" ? "" : " GET /api/info"}: ${describeHostFailure(err)}`,
        { cause: err },
      );
    }
    const connected = await this.store.updateHost(id, {
      disconnected: false,
      state: "online",
      failures: 0,
      info,
      vms,
      hostname: info.hostname,
      lastSeenAt: new Date().toISOString(),
      lastError: null,
    });
    await this.events.hostConnectionChanged(id, true);
    await this.events.hostsChanged();
    return connected;
  }
}

/** Refuses calls to a disconnected host's VMs (409): the user asked the controller to leave it alone. */
export function assertConnected(host: Pick<HostRecord, "id" | "disconnected">): void {
  if (host.disconnected) {
    throw new CorralError("conflict", `Host ${quote(host.id)} is disconnected: connect it first (POST /api/v1/hosts/${host.id}/connect)`);
  }
}
