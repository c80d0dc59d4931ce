// What the controller's routes are given: the services they call.
import type { FastifyBaseLogger, FastifyInstance, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from "fastify";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FleetStore } from "./db/index.ts";
import type { EnvService } from "./envs.ts";
import type { HostConnections } from "./host-connections.ts";
import type { HostDrivers } from "./host-driver.ts";
import type { HostRegistry } from "./hosts.ts";
import type { LiveUpdates } from "./live-updates.ts";
import type { ControllerMetrics } from "./metrics.ts";

export interface ControllerContext {
  store: FleetStore;
  hosts: HostRegistry;
  /** Virtumancer's connect and disconnect of a host. */
  connections: HostConnections;
  envs: EnvService;
  drivers: HostDrivers;
  live: LiveUpdates;
  metrics: ControllerMetrics;
  version: string;
  /** The dashboard's built files (index.html, assets/). */
  webRoot: string;
  /** Whether this process runs the heartbeats and expiry (see FleetCoordination). */
  isLeader: () => boolean;
  /** Asks a host for its report now (after a change made through the controller), as a heartbeat does. */
  refreshHost: (hostId: string) => Promise<void>;
}

export type ControllerApp = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, TypeBoxTypeProvider>;
