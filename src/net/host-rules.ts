// The text of one daemon's host tables, `inet corral_net_<tag>` (NAT, port maps, bridge VMs' egress policy,
// the wall between TAP-mode guests and the host) and `bridge corral_br_<tag>` (anti-spoof per TAP), for
// `nft -f -`. Pure, pinned by tests. Each change rewrites both tables whole in one transaction from the
// daemon's state, so a stale element or chain cannot survive a rewrite. `inet corral_guard` (the user-mode
// wall, host-isolation-rules.ts) is never named here: its output hook at -150 stays as it is.
import { createHash } from "node:crypto";
import type { HostAccess } from "./host-access.ts";
import type { EgressPolicy } from "./network-config.ts";
import { bridgeTable, netTable, vethPrefix } from "./names.ts";
import { egressStatements, METADATA_CIDR } from "./policy.ts";

export interface BridgeVmRules {
  readonly deviceId: number;
  /** The TAP (`<tap_prefix><device id>`), a port of its group's bridge. */
  readonly tap: string;
  readonly address: string;
  readonly mac: string;
  readonly policy: EgressPolicy;
  readonly denyOutgoing: boolean;
}

export interface IsolatedVmRules {
  readonly deviceId: number;
  readonly address: string;
  /** Allow entries that name an address of this host: the only way an isolated VM reaches the host. */
  readonly hostAllow: readonly { readonly cidr: string; readonly port: number | undefined }[];
}

export interface DnatRule {
  readonly hostPort: number;
  readonly address: string;
  readonly guestPort: number;
}

export interface HostRulesInput {
  readonly tag: string;
  /** In the table's comment: a later daemon deletes tables whose state directory is gone. */
  readonly stateDir: string;
  /** config.network.host_isolation: false opens the host to bridge-mode guests, as in Slicer. */
  readonly hostIsolation: boolean;
  /** config.network.host_access: host services guests may reach through the wall. */
  readonly hostAccess: readonly HostAccess[];
  readonly bridges: readonly { readonly name: string; readonly subnet: string }[];
  readonly isolatedRanges: readonly string[];
  readonly bridgeVms: readonly BridgeVmRules[];
  readonly isolatedVms: readonly IsolatedVmRules[];
  readonly portMaps: readonly DnatRule[];
}

const REJECT = ["meta l4proto tcp reject with tcp reset", "reject with icmpx type admin-prohibited"];

function quoted(text: string): string {
  return `"${text.replace(/["\\\n]/g, "_")}"`;
}

function set(name: string, type: string, elements: readonly string[]): string[] {
  const body = [`type ${type}`];
  if (elements.length > 0) body.push(`elements = { ${elements.join(", ")} }`);
  return [`${name} {`, ...body.map((l) => `\t${l}`), "}"];
}

function chain(name: string, statements: readonly string[]): string[] {
  return [`chain ${name} {`, ...statements.map((s) => `\t${s}`), "}"];
}

function hostAccessRule(access: HostAccess): string | undefined {
  if (access.address?.includes(":")) return undefined;
  const [first, last] = access.ports;
  const ports = first === last ? String(first) : `${first}-${last}`;
  const address = access.address === undefined ? "" : `ip daddr ${access.address} `;
  return `${address}meta l4proto ${access.protocol} th dport ${ports} accept`;
}

function inetBody(input: HostRulesInput): string[] {
  const ci = `"${vethPrefix(input.tag)}*"`;
  const hasBridges = input.bridges.length > 0;
  const lines: string[] = [];
  lines.push(
    ...set(
      "set bridges",
      "ifname",
      input.bridges.map((b) => quoted(b.name)),
    ),
  );
  lines.push(
    ...set(
      "map vm_egress",
      "ipv4_addr : verdict",
      input.bridgeVms.map((vm) => `${vm.address} : jump vm_${vm.deviceId}`),
    ),
  );
  lines.push(
    ...set(
      "map dnat_tcp",
      "inet_service : ipv4_addr . inet_service",
      input.portMaps.map((m) => `${m.hostPort} : ${m.address} . ${m.guestPort}`),
    ),
  );
  lines.push(
    ...set(
      "set deny_new",
      "ipv4_addr",
      input.bridgeVms.filter((vm) => vm.denyOutgoing).map((vm) => vm.address),
    ),
  );
  lines.push(...chain("prerouting", ["type nat hook prerouting priority dstnat; policy accept;", "fib daddr type local dnat ip to tcp dport map @dnat_tcp"]));
  lines.push(...chain("output_nat", ["type nat hook output priority -100; policy accept;", "fib daddr type local dnat ip to tcp dport map @dnat_tcp"]));
  lines.push(
    ...chain("forward", [
      "type filter hook forward priority filter; policy accept;",
      "ct state established,related accept",
      `iifname ${ci} oifname ${ci} drop`,
      ...(hasBridges ? [`iifname ${ci} oifname @bridges drop`] : []),
      "ip saddr vmap @vm_egress",
      ...(hasBridges ? ["iifname @bridges meta nfproto ipv6 drop"] : []),
      `iifname ${ci} meta nfproto ipv6 drop`,
    ]),
  );
  lines.push(
    ...chain("input", [
      "type filter hook input priority filter; policy accept;",
      ...(hasBridges ? ["iifname @bridges jump bridge_input"] : []),
      `iifname ${ci} jump isolated_input`,
    ]),
  );
  const bridgeInput = ["ct state established,related accept", "ip saddr @deny_new reject with icmpx type admin-prohibited", "icmp type echo-request accept"];
  if (input.hostIsolation) bridgeInput.push(...input.hostAccess.map(hostAccessRule).filter((r): r is string => r !== undefined), ...REJECT);
  else bridgeInput.push("accept");
  lines.push(...chain("bridge_input", bridgeInput));
  const isolatedInput = ["ct state established,related accept"];
  for (const vm of input.isolatedVms) {
    for (const entry of vm.hostAllow) {
      const port = entry.port === undefined ? "" : ` meta l4proto { tcp, udp } th dport ${entry.port}`;
      isolatedInput.push(`ip saddr ${vm.address} ip daddr ${entry.cidr}${port} accept`);
    }
  }
  lines.push(...chain("isolated_input", [...isolatedInput, ...REJECT]));
  lines.push(
    ...chain("postrouting", [
      "type nat hook postrouting priority srcnat; policy accept;",
      ...input.bridges.map((b) => `ip saddr ${b.subnet} oifname != ${quoted(b.name)} masquerade`),
      ...input.isolatedRanges.map((range) => `ip saddr ${range} oifname != ${ci} masquerade`),
      "ct status dnat ip saddr 127.0.0.0/8 masquerade",
    ]),
  );
  // The cloud metadata service is guarded as in isolated mode: a guest must not read the host's credentials.
  for (const vm of input.bridgeVms) lines.push(...chain(`vm_${vm.deviceId}`, egressStatements(vm.policy, { denyOutgoing: vm.denyOutgoing, guarded: [METADATA_CIDR] })));
  return lines;
}

function bridgeBody(input: HostRulesInput): string[] {
  const lines: string[] = [];
  lines.push(
    ...set(
      "map port_guard",
      "ifname : verdict",
      input.bridgeVms.map((vm) => `${quoted(vm.tap)} : jump guard_${vm.deviceId}`),
    ),
  );
  lines.push(...chain("prerouting", ["type filter hook prerouting priority -200; policy accept;", "iifname vmap @port_guard"]));
  for (const vm of input.bridgeVms) {
    lines.push(
      ...chain(`guard_${vm.deviceId}`, [
        `ether saddr != ${vm.mac} drop`,
        "ether type ip6 drop",
        `arp saddr ether != ${vm.mac} drop`,
        `arp saddr ip != ${vm.address} drop`,
        `ether type ip ip saddr != ${vm.address} drop`,
      ]),
    );
  }
  return lines;
}

function table(family: string, name: string, comment: string, body: readonly string[]): string[] {
  return [`add table ${family} ${name}`, `delete table ${family} ${name}`, `table ${family} ${name} {`, `\tcomment ${quoted(comment)}`, ...body.map((l) => `\t${l}`), "}"];
}

/** A short hash of what the tables hold, kept in their comments: watch() rewrites them when it differs. */
export function rulesGeneration(input: HostRulesInput): string {
  const text = [...inetBody(input), ...bridgeBody(input)].join("\n");
  return createHash("sha256").update(text).digest("hex").slice(0, 12);
}

/** The comment of both tables: `corral <generation> <stateDir>`. */
export function tableComment(input: HostRulesInput): string {
  return `corral ${rulesGeneration(input)} ${input.stateDir}`;
}

/**
 * Both tables, replaced whole in one transaction (`add` then `delete` makes the delete safe when a table is
 * missing). Every statement ends its line: nft refuses a statement followed by `}` on the same line.
 */
export function hostTablesScript(input: HostRulesInput): string {
  const comment = tableComment(input);
  return [...table("inet", netTable(input.tag), comment, inetBody(input)), ...table("bridge", bridgeTable(input.tag), comment, bridgeBody(input)), ""].join("\n");
}

/** Takes both tables away (the daemon's last VM in a TAP mode is gone and the daemon stops, or tests). */
export function deleteHostTablesScript(tag: string): string {
  return [`add table inet ${netTable(tag)}`, `delete table inet ${netTable(tag)}`, `add table bridge ${bridgeTable(tag)}`, `delete table bridge ${bridgeTable(tag)}`, ""].join(
    "\n",
  );
}
