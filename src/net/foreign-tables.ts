// Other nftables tables on the host, as the network manager meets them at start: tables of Corral daemons
// whose state directory is gone (deleted; a live daemon's are left alone), and other firewalls' forward
// chains with policy drop (Docker, firewalld, libvirt), which would silently cut VMs off (a warning).
import { existsSync } from "node:fs";
import type { Logger } from "../util/log.ts";
import type { LinkRunner } from "./link-commands.ts";

/** A table's comment from `nft list table` text (nft 1.0.6's JSON leaves comments out). */
export function tableCommentOf(listing: string): string | undefined {
  const match = /^table \S+ \S+ \{\n\s*comment "([^"]*)"/.exec(listing);
  return match?.[1];
}

/** Deletes `corral_net_*`/`corral_br_*` tables of other tags whose comment names a state directory that is gone. */
export async function deleteStaleTables(runner: LinkRunner, tag: string, log: Logger): Promise<void> {
  try {
    const listing = JSON.parse(await runner.nft(["-j", "list", "tables"])) as { nftables: { table?: { family: string; name: string } }[] };
    for (const { table } of listing.nftables) {
      if (!table || !/^corral_(net|br)_[0-9a-f]{8}$/.test(table.name) || table.name.endsWith(tag)) continue;
      const comment = tableCommentOf(await runner.nft(["list", "table", table.family, table.name])) ?? "";
      const owner = /^corral \S+ (.+)$/.exec(comment)?.[1];
      if (owner === undefined || existsSync(owner)) continue;
      await runner.nft(["delete", "table", table.family, table.name]);
      log.warn({ table: `${table.family} ${table.name}`, state_dir: owner }, "Deleted the network table of a Corral daemon whose state directory is gone");
    }
  } catch (err) {
    log.warn({ err }, "Cannot look for other daemons' stale network tables");
  }
}

/**
 * Docker (iptables FORWARD policy DROP), firewalld and libvirt add forward chains whose drop wins over our
 * accept: VMs would lose the outside with no sign of why. Said once at start, with the fix.
 */
export async function warnForeignForwardDrop(runner: LinkRunner, subnets: readonly string[], log: Logger): Promise<void> {
  try {
    const listing = JSON.parse(await runner.nft(["-j", "list", "chains"])) as {
      nftables: { chain?: { family: string; table: string; name: string; hook?: string; policy?: string } }[];
    };
    const dropping = listing.nftables.flatMap(({ chain }) =>
      chain?.hook === "forward" && chain.policy === "drop" && !chain.table.startsWith("corral_") ? [`${chain.family} ${chain.table} ${chain.name}`] : [],
    );
    if (dropping.length === 0) return;
    log.warn(
      { chains: dropping, subnets },
      `Forwarded traffic is dropped by another firewall's chain (${dropping.join(", ")}; Docker does this): bridge and isolated VMs may not reach the outside. ` +
        `Accept their subnets there, e.g. iptables -I DOCKER-USER -s ${subnets[0] ?? "SUBNET"} -j ACCEPT and the same with -d`,
    );
  } catch (err) {
    log.warn({ err }, "Cannot check for other firewalls' forward chains");
  }
}
