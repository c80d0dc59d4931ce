// A VM's network as the API shows it and as PATCH /vm/HOST/network changes it: the describe body (Slicer's
// `network: {mode, policy_source, host_group, override, effective}` with Corral's fields), the stored
// override's lists (vms.network) and a patch applied to them. Pure, beside VmManager which acts.
import { isProblem } from "../../net/cidr.ts";
import type { NetworkManager } from "../../net/network-manager.ts";
import { mergePolicy, parseEgressList, parsePolicyOverride, type PolicyOverride } from "../../net/policy.ts";
import { USER_NET } from "../../net/user-network.ts";
import type { EgressPolicy } from "../../net/network-config.ts";
import { CorralError } from "../../protocol/errors.ts";
import type { NetworkPatchBody, PolicyLists, VmNetworkDescription } from "../../protocol/net.ts";
import type { NetworkPolicyLists, VmRecord } from "./vm-store.ts";

/** The lists as written, for the record (an absent list stays absent: it inherits). */
export function overrideOfRecord(override: PolicyOverride | undefined): NetworkPolicyLists {
  const lists: NetworkPolicyLists = {};
  if (override?.allow) lists.allow = override.allow.map((e) => e.text);
  if (override?.drop) lists.drop = override.drop.map((e) => e.text);
  return lists;
}

/** The stored lists parsed again (they were checked when stored); undefined when the VM has none. */
export function storedOverride(lists: NetworkPolicyLists): PolicyOverride | undefined {
  if (lists.allow === undefined && lists.drop === undefined) return undefined;
  const parsed = parsePolicyOverride(lists, "vms.network");
  return isProblem(parsed) ? undefined : parsed;
}

function texts(policy: EgressPolicy): PolicyLists {
  return { allow: policy.allow.map((e) => e.text), drop: policy.drop.map((e) => e.text) };
}

/** PATCH semantics: an absent field keeps the VM's list, `null` goes back to the group's, a list replaces it. */
export function policyPatch(current: NetworkPolicyLists, patch: NetworkPatchBody): NetworkPolicyLists {
  const next: NetworkPolicyLists = { ...current };
  for (const key of ["allow", "drop"] as const) {
    const value = patch[key];
    if (value === undefined) continue;
    if (value === null) {
      delete next[key];
      continue;
    }
    const parsed = parseEgressList(value, `body field ${key}`);
    if (isProblem(parsed)) throw new CorralError("invalid_request", `Invalid ${parsed.problem}`);
    next[key] = parsed.map((e) => e.text);
  }
  return next;
}

export function vmNetworkDescription(record: VmRecord, network: NetworkManager | undefined): VmNetworkDescription {
  const portMap = Object.fromEntries(record.portMap.map((m) => [String(m.guest), m.host]));
  const group = network?.group(record.hostgroup);
  const nic = group ? network?.nicOf(record.hostname, record.hostgroup, record.mac) : undefined;
  if (!network || !group) {
    return {
      mode: "user",
      policy_source: "host_group",
      host_group: { allow: [], drop: [] },
      effective: { allow: [], drop: [] },
      deny_outgoing: record.denyOutgoing,
      port_map: portMap,
      interface: { mode: "user", mac: record.mac, address: record.ip, prefix_length: USER_NET.prefixLength, gateway: USER_NET.gateway, bridge: null, target_dev: null },
    };
  }
  const override = storedOverride(record.networkPolicy);
  const description: VmNetworkDescription = {
    mode: group.network.mode,
    policy_source: override ? "override" : "host_group",
    host_group: texts(group.network.policy),
    effective: texts(mergePolicy(group.network.policy, override)),
    deny_outgoing: record.denyOutgoing,
    port_map: portMap,
    interface: nic ?? {
      mode: group.network.mode,
      mac: record.mac,
      address: record.ip,
      prefix_length: group.pool.slot(0).prefixLength,
      gateway: "",
      bridge: null,
      target_dev: null,
    },
  };
  if (override) description.override = { ...record.networkPolicy };
  return description;
}
