// The wall between guests and the host's own services as GET /info reports it (field `host_isolation`).
import { Type, type Static } from "@sinclair/typebox";

export const HostIsolationInfoSchema = Type.Object({
  state: Type.Union([Type.Literal("on"), Type.Literal("off")], {
    description: "on: guests cannot reach this host's addresses (loopback included) except what host_access allows; off: config.network.host_isolation is false",
  }),
  table: Type.Union([Type.String(), Type.Null()], { description: 'the nftables table holding the wall, e.g. "inet corral_guard"' }),
  group: Type.Union([Type.String(), Type.Null()], { description: "the group every QEMU process runs with" }),
  gid: Type.Union([Type.Integer(), Type.Null()]),
  host_access: Type.Array(Type.String(), { description: 'host services guests may reach on purpose, e.g. "tcp/127.0.0.1:5432"' }),
  unwalled_vms: Type.Array(Type.String(), { description: "VMs whose QEMU runs outside the wall (started by an older daemon or with the wall off)" }),
  warning: Type.Union([Type.String(), Type.Null()]),
});

export type HostIsolationInfo = Static<typeof HostIsolationInfoSchema>;
