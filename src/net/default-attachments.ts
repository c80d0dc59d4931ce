// The daemon's base AttachmentProvider: user-mode NICs for user-mode host groups, and detached TAPs for the
// templates of TAP-mode groups. The NetworkManager (bridge and isolated VMs, with leases and rules) wraps it
// and hands it everything else; without one, a VM of a TAP-mode group cannot be given a NIC here.
import { CorralError } from "../protocol/errors.ts";
import type { AttachmentProvider, AttachmentRequest, NetworkAttachment } from "./attachment.ts";
import { createDetachedTapAttachment } from "./detached-tap-attachment.ts";
import type { GroupNetwork } from "./network-config.ts";
import { createUserAttachment } from "./user-attachment.ts";

/** What this provider needs of a host group (daemon/config.ts's HostGroupConfig has it). */
export interface NetworkedGroup {
  readonly network: GroupNetwork;
}

/** The back-end kind a host group's NICs use: saved states (templates, commits) only load on the same kind. */
export function backendKind(group: NetworkedGroup | undefined): "user" | "tap" {
  return !group || group.network.mode === "user" ? "user" : "tap";
}

export class DefaultAttachments implements AttachmentProvider {
  constructor(
    private readonly groupOf: (name: string) => NetworkedGroup | undefined,
    private readonly forwardAddress: string,
  ) {}

  async attachmentFor(request: AttachmentRequest): Promise<NetworkAttachment> {
    const group = this.groupOf(request.hostgroup);
    // A VM whose group left the configuration keeps running as it was made: in user mode.
    const mode = group?.network.mode ?? "user";
    if (mode === "user") {
      return createUserAttachment({ mac: request.mac, portMap: request.portMap, denyOutgoing: request.denyOutgoing, forwardAddress: this.forwardAddress });
    }
    if (request.purpose === "template") return createDetachedTapAttachment({ mode, mac: request.mac });
    throw new CorralError(
      "network_unavailable",
      `Host group ${JSON.stringify(request.hostgroup)} uses ${mode} networking, which this daemon cannot set up (no network manager): set its network.mode to "user"`,
    );
  }
}
