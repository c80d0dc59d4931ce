// `corral status`: the fleet's totals (hosts, environments, VMs) and its CPU, memory and disk, reserved
// and used against the total. Also the amount formatting the host commands share.
import type { Command } from "commander";
import type { FleetStatus } from "../sdk/index.ts";
import { addFleetOptions, withController, type FleetFlags } from "./fleet-connection.ts";
import { action, formatBytes, printJson, printTable } from "./output.ts";

export type Resource = "cpu" | "mem" | "disk";

/** Memory and disk come in MiB from the controller. */
export function formatMib(mib: number): string {
  return formatBytes(mib * 1024 * 1024);
}

/** An amount as people read it: vCPUs as a number, memory and disk as sizes. */
export function formatAmount(resource: Resource, amount: number): string {
  return resource === "cpu" ? String(amount) : formatMib(amount);
}

/** "4 GiB (13%)": an amount and its share of the total. */
export function amountWithPercent(resource: Resource, amount: number, total: number): string {
  return `${formatAmount(resource, amount)} (${percent(amount, total)})`;
}

/** "37%"; "<1%" for a sliver, so that something in use never reads as nothing; "-" when there is no total. */
export function percent(part: number, total: number): string {
  if (total <= 0) return "-";
  const value = (part / total) * 100;
  if (part > 0 && value < 1) return "<1%";
  return `${Math.round(value)}%`;
}

export function statusSummary(status: FleetStatus): string[] {
  return [
    `Hosts: ${status.hosts_online} online, ${status.hosts_offline} offline`,
    `Envs:  ${status.total_envs}`,
    `VMs:   ${status.vms_running} running, ${status.vms_stopped} stopped${status.vms_other > 0 ? `, ${status.vms_other} other` : ""}`,
  ];
}

export const CAPACITY_HEADERS = ["", "RESERVED", "USED", "TOTAL"] as const;

/** One row per resource: what the controller's VMs reserve and what the hosts report in use, of the online total. */
export function capacityRows(status: FleetStatus): string[][] {
  return (["cpu", "mem", "disk"] as const).map((resource) => {
    const [total, reserved, used] = [status[`${resource}_total`], status[`${resource}_reserved`], status[`${resource}_used`]];
    return [resource.toUpperCase(), amountWithPercent(resource, reserved, total), amountWithPercent(resource, used, total), formatAmount(resource, total)];
  });
}

export function registerStatusCommand(program: Command): void {
  addFleetOptions(program.command("status").description("Show the fleet's totals: hosts, environments, VMs, CPU, memory and disk"))
    .option("--json", "print JSON")
    .action(
      action(async (flags: FleetFlags & { json?: boolean }) => {
        const status = await withController(flags, (client) => client.status());
        if (flags.json) return printJson(status);
        process.stdout.write(`${statusSummary(status).join("\n")}\n\n`);
        printTable(CAPACITY_HEADERS, capacityRows(status));
        if (status.hosts === 0) process.stdout.write("\nNo hosts. Add one: corral host add HOST:PORT\n");
      }),
    );
}
