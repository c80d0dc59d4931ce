// QEMU user-mode networking (slirp): no root, outbound NAT, each VM alone in its own 10.0.2.0/24 with the
// gateway at .2 and DNS at .3. The guest's address is the same in every VM; it is only reachable through
// port forwards on the host's loopback.
import { randomBytes } from "node:crypto";
import type { PortForward, UserNetwork } from "../engine/qemu/qemu-args.ts";

export const USER_NET = {
  guestAddress: "10.0.2.15",
  prefixLength: 24,
  gateway: "10.0.2.2",
  dns: "10.0.2.3",
} as const;

/** A locally administered unicast MAC in QEMU's 52:54:00 range. */
export function randomMac(): string {
  const bytes = randomBytes(3);
  return ["52", "54", "00", ...[...bytes].map((b) => b.toString(16).padStart(2, "0"))].join(":");
}

export function userNetwork(mac: string, forwards: readonly PortForward[] = [], denyOutgoing = false): UserNetwork {
  return {
    guestCidr: `${USER_NET.guestAddress}/${USER_NET.prefixLength}`,
    gateway: USER_NET.gateway,
    dns: USER_NET.dns,
    mac,
    forwards,
    denyOutgoing,
  };
}
