// The parsed `network:` of a host group (Slicer's YAML; daemon/config.ts validates it) and the egress policy
// types shared by the config, the API and the rules. Types only, plus the user-mode default.
import type { AddressRange, AddressWithPrefix, Cidr, EgressEntry } from "./cidr.ts";

export type NetworkMode = "user" | "bridge" | "isolated";

/** Slicer's `drop`/`allow` lists, parsed. Neither: all allowed; only allow: the rest dropped; both: the more specific wins. */
export interface EgressPolicy {
  readonly allow: readonly EgressEntry[];
  readonly drop: readonly EgressEntry[];
}

export interface UserGroupNetwork {
  readonly mode: "user";
}

export interface BridgeGroupNetwork {
  readonly mode: "bridge";
  /** The bridge interface (`bridge:`, default "br<group>0" cut to 15 characters). */
  readonly bridge: string;
  /** TAP names are this prefix and a device number (`tap_prefix:`). */
  readonly tapPrefix: string;
  /** True when `tap_prefix:` was not written: the daemon may put its own tag in it ("c<tag4>-<index>-"). */
  readonly tapPrefixDerived?: boolean;
  /** The bridge's own address and the subnet VMs get addresses from (`gateway: 192.168.137.1/24`). */
  readonly gateway: AddressWithPrefix;
  /** The part of the subnet handed out (`range:`); default: the whole subnet but network, gateway, broadcast. */
  readonly range: AddressRange | undefined;
  /** A static list of addresses (`addresses:`), handed out before anything else when given. */
  readonly addresses: readonly number[];
  /** Egress policy of routed traffic (Corral's extension of bridge mode; empty lists: all allowed). */
  readonly policy: EgressPolicy;
}

export interface IsolatedGroupNetwork {
  readonly mode: "isolated";
  /** Cut into /30 blocks, one per VM (`range:`, default a /22 in 169.254.0.0/16 derived from the group name). */
  readonly range: Cidr;
  /** True when `range` was derived rather than written (the daemon pins it in its state at first start). */
  readonly rangeDerived: boolean;
  readonly policy: EgressPolicy;
}

export type GroupNetwork = UserGroupNetwork | BridgeGroupNetwork | IsolatedGroupNetwork;

export const USER_GROUP_NETWORK: UserGroupNetwork = Object.freeze({ mode: "user" });
