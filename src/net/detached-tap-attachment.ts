// The NIC a template of a TAP-mode (bridge or isolated) host group is built on: a TAP in QEMU's own, empty
// network namespace (`unshare --net`), attached to nothing and never up on the host. Saved states do not
// cross back ends (a slirp section will not load under a TAP; a TAP state needs vnet_hdr=on), so clones that
// will run on a TAP must come from a template saved on one; which TAP does not matter, the netdev itself has
// no state in the stream. The guest is given no address: the snapshot announces nothing, and each clone is
// told its own address after the restore.
import type { NicView } from "../protocol/net.ts";
import type { GuestNetwork, NetdevSpec, NetworkAttachment } from "./attachment.ts";
import type { NetworkMode } from "./network-config.ts";

/** The TAP's name inside the private namespace (nothing else lives there). */
export const DETACHED_TAP = "tap0";

/** Runs QEMU in a network namespace of its own; unshare execs QEMU, so the pid stays QEMU's. */
export const PRIVATE_NETNS_PREFIX: readonly string[] = Object.freeze(["unshare", "--net", "--"]);

export function createDetachedTapAttachment(input: { readonly mode: Exclude<NetworkMode, "user">; readonly mac: string; readonly vhost?: boolean }): NetworkAttachment {
  const guest: GuestNetwork = { address: "", prefixLength: 0, gateway: "", dns: [], mac: input.mac };
  const netdev: NetdevSpec = { kind: "tap", ifname: DETACHED_TAP, vhost: input.vhost ?? false };
  const view: NicView = { mode: input.mode, mac: input.mac, address: "", prefix_length: 0, gateway: "", bridge: null, target_dev: null };
  return {
    mode: input.mode,
    guest,
    netdev,
    launchPrefix: PRIVATE_NETNS_PREFIX,
    // Nothing to plumb: QEMU creates the TAP itself in its namespace, which dies with it.
    needsPlumbing: false,
    plumb: async () => undefined,
    view: () => ({ ...view }),
  };
}
