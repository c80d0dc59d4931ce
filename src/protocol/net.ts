// Networking on the wire: a VM's NIC and its egress policy as GET /vm/HOST, PATCH /vm/HOST/network,
// /api/vms and Virtumancer's hardware view show them. The describe shape follows Slicer's Go SDK
// (`network: {mode, policy_source, host_group, override, effective}`); Corral's fields ride beside.
import { Type, type Static } from "@sinclair/typebox";

export type NetworkModeName = "user" | "bridge" | "isolated";

export interface NicView {
  mode: NetworkModeName;
  mac: string;
  /** The guest's address (without prefix). */
  address: string;
  prefix_length: number;
  gateway: string;
  /** The bridge the TAP is a port of (bridge mode); null otherwise. */
  bridge: string | null;
  /** The host-side device: the TAP (bridge mode) or the host end of the veth (isolated); null in user mode. */
  target_dev: string | null;
}

export interface PolicyLists {
  allow: string[];
  drop: string[];
}

export interface VmNetworkDescription {
  mode: NetworkModeName;
  policy_source: "host_group" | "override";
  host_group: PolicyLists;
  override?: Partial<PolicyLists>;
  effective: PolicyLists;
  deny_outgoing: boolean;
  /** Guest port → host port (TTstack's `port_map`). */
  port_map: Record<string, number>;
  interface: NicView;
}

const PolicyList = Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: 256 });

/** Slicer's SDK fork/create policy: an absent list inherits the host group's, `[]` clears it. */
export const NetworkPolicyBodySchema = Type.Object({ allow: Type.Optional(PolicyList), drop: Type.Optional(PolicyList) }, { additionalProperties: false });
export type NetworkPolicyBody = Static<typeof NetworkPolicyBodySchema>;

/** PATCH /vm/HOST/network: `null` goes back to the host group's list. */
export const NetworkPatchBodySchema = Type.Object(
  {
    allow: Type.Optional(Type.Union([PolicyList, Type.Null()])),
    drop: Type.Optional(Type.Union([PolicyList, Type.Null()])),
    deny_outgoing: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type NetworkPatchBody = Static<typeof NetworkPatchBodySchema>;
