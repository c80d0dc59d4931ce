// The seam between networking and the engine: a NetworkAttachment says how a machine's one NIC is backed
// (QEMU's user-mode network, or a TAP on a bridge or in the VM's own namespace), what the guest is told, and
// plumbs the host side once QEMU's process exists and before any vCPU runs. src/net makes attachments;
// src/daemon/vm/launch-vm.ts consumes them.
import type { Reverter } from "../util/reverter.ts";
import type { NetworkMode } from "./network-config.ts";
import type { PortForward } from "../engine/qemu/qemu-args.ts";
import type { NicView } from "../protocol/net.ts";

/** What the guest is told: on the kernel command line at a cold boot, in its identity after a restore. */
export interface GuestNetwork {
  readonly address: string;
  readonly prefixLength: number;
  readonly gateway: string;
  readonly dns: readonly string[];
  readonly mac: string;
}

/** The QEMU back end of the NIC (qemu-args.ts renders it; TAPs always with vnet_hdr=on so saved states agree). */
export type NetdevSpec =
  | { readonly kind: "user"; readonly guestCidr: string; readonly gateway: string; readonly dns: string; readonly restrict: boolean; readonly forwards: readonly PortForward[] }
  | { readonly kind: "tap"; readonly ifname: string; readonly vhost: boolean };

export interface NetworkAttachment {
  readonly mode: NetworkMode;
  readonly guest: GuestNetwork;
  readonly netdev: NetdevSpec;
  /** argv QEMU is exec'd through: [] or ["unshare", "--net", "--"] (unshare execs: the pid stays QEMU's). */
  readonly launchPrefix: readonly string[];
  /** QEMU must start with its vCPUs stopped until plumb() is done. */
  readonly needsPlumbing: boolean;
  /** After QEMU's process exists, before any vCPU runs: devices and rules; each step's undo goes into `revert`. */
  plumb(pid: number, revert: Reverter, signal?: AbortSignal): Promise<void>;
  /** For GET /vm/HOST, /api/vms/ID hardware, Virtumancer and the dashboard. */
  view(): NicView;
}

/** What the engine asks for: the NIC of a VM (its lease and policy are the provider's) or of a template being made. */
export interface AttachmentRequest {
  readonly hostname: string;
  readonly hostgroup: string;
  readonly mac: string;
  /** Guest port → host port (user mode: hostfwd on the daemon's address; TAP modes: DNAT). */
  readonly portMap: readonly { readonly guest: number; readonly host: number }[];
  readonly denyOutgoing: boolean;
  /** A template is built on a NIC with no address and no peer (TAP modes: a TAP in a private namespace). */
  readonly purpose: "vm" | "template";
}

/**
 * Makes attachments. src/net's NetworkManager is the daemon's provider for bridge and isolated groups and
 * hands user-mode VMs and templates to a base provider (user-attachment.ts, detached TAPs).
 */
export interface AttachmentProvider {
  attachmentFor(request: AttachmentRequest): Promise<NetworkAttachment>;
}
