// Today's network behind the NetworkAttachment seam: QEMU's user-mode network (slirp). No root and no host
// plumbing: every guest is 10.0.2.15/24 behind gateway 10.0.2.2 and DNS 10.0.2.3, reached only through port
// forwards (hostfwd) on the daemon's address; deny_outgoing is slirp's `restrict=on`.
import type { NicView } from "../protocol/net.ts";
import type { GuestNetwork, NetdevSpec, NetworkAttachment } from "./attachment.ts";
import { USER_NET } from "./user-network.ts";

export interface UserAttachmentInput {
  readonly mac: string;
  /** Guest port → host port; each is forwarded from `forwardAddress`. */
  readonly portMap: readonly { readonly guest: number; readonly host: number }[];
  readonly denyOutgoing: boolean;
  readonly forwardAddress: string;
}

export function createUserAttachment(input: UserAttachmentInput): NetworkAttachment {
  const guest: GuestNetwork = {
    address: USER_NET.guestAddress,
    prefixLength: USER_NET.prefixLength,
    gateway: USER_NET.gateway,
    dns: [USER_NET.dns],
    mac: input.mac,
  };
  const netdev: NetdevSpec = {
    kind: "user",
    guestCidr: `${USER_NET.guestAddress}/${USER_NET.prefixLength}`,
    gateway: USER_NET.gateway,
    dns: USER_NET.dns,
    restrict: input.denyOutgoing,
    forwards: input.portMap.map((p) => ({ hostAddress: input.forwardAddress, hostPort: p.host, guestPort: p.guest })),
  };
  const view: NicView = {
    mode: "user",
    mac: input.mac,
    address: guest.address,
    prefix_length: guest.prefixLength,
    gateway: guest.gateway,
    bridge: null,
    target_dev: null,
  };
  return {
    mode: "user",
    guest,
    netdev,
    launchPrefix: [],
    needsPlumbing: false,
    plumb: async () => undefined,
    view: () => ({ ...view }),
  };
}
