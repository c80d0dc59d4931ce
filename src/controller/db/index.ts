// The fleet controller's state store: hosts, environments and VMs over SQLite or PostgreSQL (one kysely query
// layer), the placement of VMs on hosts, and the events and leadership that controller processes sharing a
// PostgreSQL coordinate through.
export { openFleetStore, parseStoreUrl, redactUrl, type FleetStoreOptions, type StoreTarget } from "./open-database.ts";
export { FleetStore, OPERATION_LEASE_MS, type EnvPosition } from "./fleet-store.ts";
export type { FleetTotals, StateCounts } from "./fleet-status.ts";
export type { BackendName } from "./dialects.ts";
export type { EventListener } from "./coordination.ts";
export { MAX_EVENT_BYTES } from "./coordination.ts";
export * from "./records.ts";
export { DEFAULT_OVERCOMMIT, placeVms, type Overcommit, type PlaceFn, type Placement, type PlacementHost, type PlacementSpec } from "./placement.ts";
