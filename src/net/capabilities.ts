// What this host lets the daemon do for TAP-mode networking, probed once at start: root or the capabilities
// (CAP_NET_ADMIN 12, CAP_SYS_ADMIN 21), /dev/net/tun, nft, unshare and nsenter, bridge netfilter, vhost-net.
// A missing piece makes a group `unavailable` with a sentence that names it and what to do (plan §4.2).
import { spawnSync } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";
import { findProgram } from "../util/run.ts";

export interface NetCapabilities {
  readonly uid: number | undefined;
  readonly netAdmin: boolean;
  readonly sysAdmin: boolean;
  readonly tun: boolean;
  readonly nft: boolean;
  readonly unshare: boolean;
  readonly nsenter: boolean;
  /** `nf_call_iptables` can be set on a bridge (br_netfilter built in or loaded). */
  readonly bridgeNetfilter: boolean;
  readonly vhostNet: boolean;
}

const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;

function effectiveCaps(status: string): bigint {
  const match = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return match ? BigInt(`0x${match[1]}`) : 0n;
}

function canOpen(path: string): boolean {
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** Sets nf_call_iptables on a scratch bridge in a throwaway namespace (nothing of the host's is touched). */
function probeBridgeNetfilter(): boolean {
  const result = spawnSync("unshare", ["--net", "--", "sh", "-c", "ip link add corral-probe type bridge && ip link set dev corral-probe type bridge nf_call_iptables 1"], {
    stdio: "ignore",
    timeout: 10_000,
  });
  return result.status === 0;
}

export function probeCapabilities(): NetCapabilities {
  const caps = effectiveCaps(readFileSync("/proc/self/status", "utf8"));
  const netAdmin = !!((caps >> CAP_NET_ADMIN) & 1n);
  const sysAdmin = !!((caps >> CAP_SYS_ADMIN) & 1n);
  const unshare = findProgram("unshare") !== undefined;
  return {
    uid: process.getuid?.(),
    netAdmin,
    sysAdmin,
    tun: canOpen("/dev/net/tun"),
    nft: findProgram("nft") !== undefined,
    unshare,
    nsenter: findProgram("nsenter") !== undefined,
    // Without CAP_SYS_ADMIN no throwaway namespace can be made to probe in: the bridge's own set-up says.
    bridgeNetfilter: netAdmin && sysAdmin && unshare ? probeBridgeNetfilter() : true,
    vhostNet: canOpen("/dev/vhost-net"),
  };
}

/**
 * Why a group in `mode` cannot be set up on this host, as one sentence naming what is missing and the fix;
 * undefined when nothing is missing. `fieldPath` is the group's `config.host_groups[i].network`.
 */
export function missingFor(mode: "bridge" | "isolated", caps: NetCapabilities, fieldPath: string): string | undefined {
  const needs =
    mode === "bridge"
      ? "bridge mode makes a bridge, a TAP and nftables rules per VM (CAP_NET_ADMIN)"
      : "isolated mode makes a network namespace, a veth pair and nftables rules per VM (CAP_SYS_ADMIN and CAP_NET_ADMIN)";
  const fix = `Run the daemon as root, or set ${fieldPath}.mode: user`;
  const missing: string[] = [];
  if (!caps.netAdmin || (mode === "isolated" && !caps.sysAdmin)) {
    missing.push(caps.uid === 0 ? "the daemon lacks CAP_NET_ADMIN or CAP_SYS_ADMIN" : `the daemon runs as uid ${caps.uid ?? "unknown"}, not root`);
  }
  if (!caps.tun) missing.push("/dev/net/tun cannot be opened (load the tun module)");
  if (!caps.nft) missing.push(`"nft" is not installed (Debian package "nftables")`);
  if (mode === "isolated" && (!caps.unshare || !caps.nsenter)) missing.push(`"unshare" or "nsenter" is not installed (Debian package "util-linux")`);
  if (missing.length === 0 && !caps.bridgeNetfilter) missing.push("bridge netfilter is missing (modprobe br_netfilter)");
  if (missing.length === 0) return undefined;
  return `${missing.join("; ")}: ${needs}. ${fix}`;
}
