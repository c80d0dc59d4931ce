// `corral up --net user|bridge|isolated [--cidr …] [--range …] [--allow …] [--drop …]` (slicer new's flags):
// the default host group's `network:` written into the configuration `up` starts the daemon with, and the
// lines `up` prints about each group's network (with what a TAP mode needs when the daemon is not root).
import { DEFAULT_CONFIG_YAML, type HostGroupConfig } from "../daemon/config.ts";
import { formatIpv4, isProblem, networkOf, parseAddressWithPrefix } from "../net/cidr.ts";

export interface UpNetworkFlags {
  net?: string;
  cidr?: string;
  range?: string;
  allow?: string[];
  drop?: string[];
}

const yamlList = (entries: readonly string[]): string => `[${entries.map((e) => JSON.stringify(e)).join(", ")}]`;

/**
 * The YAML `up` runs the daemon with when --net is given (undefined: no --net, the built-in defaults), the
 * default group with its network. `--cidr` is slicer new's: a subnet ("192.168.137.0/24": the bridge takes
 * .1) or the bridge's own address ("192.168.137.1/24"). Bad values are left to the config's own checks.
 */
export function upConfigYaml(flags: UpNetworkFlags): string | undefined {
  const mode = flags.net;
  const given = (["cidr", "range", "allow", "drop"] as const).filter((k) => flags[k] !== undefined);
  if (mode === undefined) {
    if (given.length > 0) throw new Error(`--${given[0]} needs --net bridge or --net isolated`);
    return undefined;
  }
  if (!["user", "bridge", "isolated"].includes(mode)) throw new Error(`Invalid --net ${JSON.stringify(mode)}: use user, bridge or isolated`);
  if (mode === "user") {
    if (given.length > 0) throw new Error(`--${given[0]} is for --net bridge or --net isolated`);
    return DEFAULT_CONFIG_YAML;
  }
  const lines: string[] = [`        mode: ${mode}`];
  if (mode === "bridge") {
    if (flags.cidr === undefined) throw new Error("--net bridge needs --cidr, the VMs' subnet, e.g. --cidr 192.168.137.0/24");
    lines.push(`        gateway: ${JSON.stringify(gatewayOf(flags.cidr))}`);
  } else if (flags.cidr !== undefined) {
    throw new Error("--cidr is for --net bridge; isolated groups take --range, e.g. --range 169.254.100.0/22");
  }
  if (flags.range !== undefined) lines.push(`        range: ${JSON.stringify(flags.range)}`);
  if (flags.allow !== undefined)
    lines.push(
      `        allow: ${yamlList(
        flags.allow
          .flatMap((a) => a.split(","))
          .map((a) => a.trim())
          .filter((a) => a !== ""),
      )}`,
    );
  if (flags.drop !== undefined)
    lines.push(
      `        drop: ${yamlList(
        flags.drop
          .flatMap((d) => d.split(","))
          .map((d) => d.trim())
          .filter((d) => d !== ""),
      )}`,
    );
  return `${DEFAULT_CONFIG_YAML}      network:\n${lines.join("\n")}\n`;
}

/** "192.168.137.0/24" → "192.168.137.1/24" (the bridge takes the first address, as slicer new writes it). */
function gatewayOf(cidr: string): string {
  const parsed = parseAddressWithPrefix(cidr);
  if (isProblem(parsed) || parsed.prefixLength > 30) return cidr;
  const network = networkOf(parsed.address, parsed.prefixLength);
  return parsed.address === network ? `${formatIpv4(network + 1)}/${parsed.prefixLength}` : cidr;
}

/** What a TAP mode does on the host, and the capabilities that takes (the daemon's own refusal says the same). */
const NEEDS = {
  bridge: "bridge mode makes a bridge, a TAP per VM and nftables rules (CAP_NET_ADMIN)",
  isolated: "isolated mode makes a network namespace, a veth pair and nftables rules per VM (CAP_SYS_ADMIN and CAP_NET_ADMIN)",
} as const;

/** One line per group for `up`'s banner; a TAP-mode group under a non-root daemon gets the sentence of why it will not work. */
export function groupNetworkLines(groups: readonly HostGroupConfig[], uid: number): string[] {
  return groups.flatMap((group, index) => {
    const network = group.network;
    const what =
      network.mode === "bridge"
        ? `bridge ${network.bridge}, gateway ${formatIpv4(network.gateway.address)}/${network.gateway.prefixLength}`
        : network.mode === "isolated"
          ? `isolated, /30 blocks of ${formatIpv4(network.range.network)}/${network.range.prefixLength}`
          : "user-mode (no root needed; switch with --net bridge or --net isolated)";
    const line = `  network     ${group.name}: ${what}`;
    if (network.mode === "user" || uid === 0) return [line];
    return [
      line,
      `  Host group ${JSON.stringify(group.name)} (network.mode ${network.mode}) is unavailable: the daemon runs as uid ${uid}, not root: ${NEEDS[network.mode]}. Run the daemon as root, or set config.host_groups[${index}].network.mode: user`,
    ];
  });
}
