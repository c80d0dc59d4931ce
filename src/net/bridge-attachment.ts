// A bridge-mode NIC: QEMU creates the transient TAP `<tap_prefix><device id>` itself (root, no script);
// plumb puts it on the group's bridge with this daemon's alias, then has the host tables take the VM in
// (anti-spoof guard, egress chain, DNAT of its port maps). The TAP dies with QEMU, so only the rules need
// an undo; they are registered before they are written so a half-done plumb leaves nothing.
import type { NicView } from "../protocol/net.ts";
import type { Reverter } from "../util/reverter.ts";
import type { GuestNetwork, NetworkAttachment } from "./attachment.ts";
import { enslaveBatch, type LinkRunner } from "./link-commands.ts";

/** The VM's place in the host tables: `add` writes it in, `remove` takes it out (each a whole-table rewrite). */
export interface HostRulesEntry {
  add(pid: number): Promise<void>;
  remove(): Promise<void>;
}

export interface BridgeAttachmentInput {
  readonly tap: string;
  readonly bridge: string;
  /** `corral:<tag>:<group>:<device id>`: a restart tells this TAP from others by it. */
  readonly alias: string;
  readonly guest: GuestNetwork;
  readonly vhost: boolean;
  readonly runner: LinkRunner;
  readonly rules: HostRulesEntry;
}

export function createBridgeAttachment(input: BridgeAttachmentInput): NetworkAttachment {
  const { guest } = input;
  return {
    mode: "bridge",
    guest,
    netdev: { kind: "tap", ifname: input.tap, vhost: input.vhost },
    launchPrefix: [],
    needsPlumbing: true,
    async plumb(pid: number, revert: Reverter, signal?: AbortSignal): Promise<void> {
      signal?.throwIfAborted();
      await input.runner.ipBatch(enslaveBatch({ tap: input.tap, bridge: input.bridge, alias: input.alias }));
      signal?.throwIfAborted();
      revert.add(`host rules of ${input.tap}`, () => input.rules.remove());
      await input.rules.add(pid);
    },
    view(): NicView {
      return { mode: "bridge", mac: guest.mac, address: guest.address, prefix_length: guest.prefixLength, gateway: guest.gateway, bridge: input.bridge, target_dev: input.tap };
    },
  };
}
