// `corral vm network HOST [--allow …] [--drop …] [--deny-outgoing|--allow-outgoing]`: show or change a VM's
// network (its NIC, port map and egress policy), and the rows `vm show` prints about it.
import type { Command } from "commander";
import type { NetworkPatchBody, VmNetworkDescription } from "../sdk/index.ts";
import { addConnectionOptions, clientFor, type ConnectionFlags } from "./connection.ts";
import { action, collect, printJson } from "./output.ts";

/** A list flag: entries (repeatable, or comma-separated), "none" for an empty list, "group" for the host group's. */
export function policyListFlag(values: readonly string[] | undefined, name: string): string[] | null | undefined {
  if (values === undefined) return undefined;
  const entries = values
    .flatMap((v) => v.split(","))
    .map((v) => v.trim())
    .filter((v) => v !== "");
  if (entries.length === 1 && entries[0] === "group") return null;
  if (entries.length === 1 && entries[0] === "none") return [];
  if (entries.includes("group") || entries.includes("none")) throw new Error(`--${name} takes entries, or "none" alone, or "group" alone`);
  return entries;
}

/** `network` of a create or fork from --allow/--drop ("group" makes no sense there: leaving the flag out is that). */
export function networkBodyFlags(flags: { allow?: string[]; drop?: string[] }): { allow?: string[]; drop?: string[] } | undefined {
  const allow = policyListFlag(flags.allow, "allow");
  const drop = policyListFlag(flags.drop, "drop");
  if (allow === null || drop === null) throw new Error('"group" is what a VM gets without --allow/--drop: leave the flag out');
  if (allow === undefined && drop === undefined) return undefined;
  return { ...(allow !== undefined ? { allow } : {}), ...(drop !== undefined ? { drop } : {}) };
}

const listText = (list: readonly string[]): string => (list.length === 0 ? "-" : list.join(", "));

/** What `vm show` and `vm network` print about a VM's network, one row each. */
export function networkRows(network: VmNetworkDescription): [string, string][] {
  const nic = network.interface;
  const device = nic.bridge !== null ? `${nic.target_dev ?? "?"} on bridge ${nic.bridge}` : (nic.target_dev ?? "-");
  const ports = Object.entries(network.port_map).map(([guest, host]) => `${host}->${guest}`);
  return [
    ["network", `${network.mode}, ${nic.address}/${nic.prefix_length} via ${nic.gateway}`],
    ["mac", nic.mac],
    ["device", device],
    ["ports", ports.length === 0 ? "-" : ports.join(", ")],
    ["allow", `${listText(network.effective.allow)}${network.override?.allow !== undefined ? " (this VM's)" : ""}`],
    ["drop", `${listText(network.effective.drop)}${network.override?.drop !== undefined ? " (this VM's)" : ""}`],
    ["outgoing", network.deny_outgoing ? "denied (new connections)" : "allowed"],
  ];
}

export function printRows(rows: readonly [string, string][]): void {
  process.stdout.write(rows.map(([key, value]) => `${`${key}:`.padEnd(12)}${value}\n`).join(""));
}

export function registerVmNetworkCommand(vm: Command): void {
  addConnectionOptions(vm.command("network").description("Show a VM's network, or change its egress policy (bridge and isolated groups)").argument("<hostname>"))
    .option("--allow <entries>", 'allowed destinations (CIDR, address, ADDRESS:PORT; repeatable or comma-separated); "none", or "group" for the host group\'s', collect)
    .option("--drop <entries>", 'dropped destinations, as --allow; "none", or "group" for the host group\'s', collect)
    .option("--deny-outgoing", "the VM may open no new connections (answers on its mapped ports still flow)")
    .option("--allow-outgoing", "lift --deny-outgoing")
    .option("--json", "print JSON")
    .action(
      action(async (hostname: string, flags: ConnectionFlags & { allow?: string[]; drop?: string[]; denyOutgoing?: boolean; allowOutgoing?: boolean; json?: boolean }) => {
        if (flags.denyOutgoing && flags.allowOutgoing) throw new Error("Give --deny-outgoing or --allow-outgoing, not both");
        const patch: NetworkPatchBody = {};
        const allow = policyListFlag(flags.allow, "allow");
        const drop = policyListFlag(flags.drop, "drop");
        if (allow !== undefined) patch.allow = allow;
        if (drop !== undefined) patch.drop = drop;
        if (flags.denyOutgoing || flags.allowOutgoing) patch.deny_outgoing = flags.denyOutgoing === true;
        const client = clientFor(flags);
        try {
          const network = Object.keys(patch).length === 0 ? (await client.describe(hostname)).network : await client.patchNetwork(hostname, patch);
          if (flags.json) return printJson(network);
          printRows(networkRows(network));
        } finally {
          await client.close();
        }
      }),
    );
}
