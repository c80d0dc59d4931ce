// The network folder's public face: user-mode networking, host ports for forwards, the wall between
// guests and the host's own services, and bridge/isolated networking (leases, host tables, the manager).
export { allocateHostPorts, isPortFree } from "./host-ports.ts";
export { randomMac, userNetwork, USER_NET } from "./user-network.ts";
export { formatHostAccess, HOST_ACCESS_SHAPE, parseHostAccess, type HostAccess, type HostAccessProtocol } from "./host-access.ts";
export { GUEST_GROUP } from "./guest-group.ts";
export { HostIsolation, HostIsolationError, type HostIsolationConfig, type VmProcess } from "./host-isolation.ts";
export { WALL_TABLE } from "./host-isolation-rules.ts";
export type { AttachmentProvider, AttachmentRequest, NetworkAttachment, GuestNetwork, NetdevSpec } from "./attachment.ts";
export { IpamStore, type Lease } from "./ipam-store.ts";
export { NetworkManager, type GroupNetworkInfo, type NetworkInfo, type IsolatedAttachmentFactory, type IsolatedAttachmentInput } from "./network-manager.ts";
