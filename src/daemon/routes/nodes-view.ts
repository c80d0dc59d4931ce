// How VM records and host groups look on the wire (Slicer's field names).
import type { CreatedNode, GroupNetworkInfo, HostGroupInfo, NodeInfo } from "../../protocol/slicer.ts";
import { SLICER_ARCH } from "../../protocol/slicer.ts";
import { isFrozenByDisk, type HealthFields } from "../../protocol/vm-health.ts";
import type { HostGroupConfig } from "../config.ts";
import { isLive, slicerStatus, type VmState } from "../../protocol/vm-lifecycle.ts";
import type { VmRecord } from "../vm/vm-store.ts";

const GiB = 1024 * 1024 * 1024;

/**
 * The lifecycle state a view shows: the record's, except that a VM QEMU froze because of its disk is
 * `paused` (its vCPUs are stopped, as after a pause; the record keeps what was asked of the VM).
 */
export function shownState(record: VmRecord, health: HealthFields): VmState {
  return isFrozenByDisk(health.health) && isLive(record.state) ? "paused" : record.state;
}

/**
 * A node in Slicer's shape, with Corral's `health` beside `status`. A VM frozen by its disk is `Paused`: its
 * vCPUs are stopped and `resume` is the way out, as after a pause (libvirt reports such a domain as paused,
 * reason I/O error); `health` says why.
 */
export function nodeView(record: VmRecord, lastAgentCall: Date | undefined, health: HealthFields): NodeInfo {
  const node: NodeInfo = {
    hostname: record.hostname,
    hostgroup: record.hostgroup,
    ip: record.ip,
    ram_bytes: record.ramBytes,
    cpus: record.cpus,
    created_at: record.createdAt,
    arch: SLICER_ARCH,
    tags: record.tags,
    status: slicerStatus(shownState(record, health)),
    persistent: record.persistent,
    ...health,
  };
  if (lastAgentCall) node.last_agent_call = lastAgentCall.toISOString();
  if (record.expiresAt) node.expires_at = record.expiresAt;
  return node;
}

/** The answer to create, relaunch and fork, as Slicer's SDKs decode it. */
export function createdView(record: VmRecord): CreatedNode {
  const created: CreatedNode = {
    hostname: record.hostname,
    hostgroup: record.hostgroup,
    ip: record.ip,
    created_at: record.createdAt,
    arch: SLICER_ARCH,
    persistent: record.persistent,
  };
  if (record.expiresAt) created.expires_at = record.expiresAt;
  return created;
}

export function hostGroupView(group: HostGroupConfig, vmCount: number, network: GroupNetworkInfo): HostGroupInfo {
  const { name: _name, ...networkView } = network;
  return {
    name: group.name,
    count: vmCount,
    ram_bytes: group.ramBytes,
    cpus: group.vcpu,
    gpu_count: 0,
    arch: SLICER_ARCH,
    ram_gb: Math.round((group.ramBytes / GiB) * 1000) / 1000,
    vcpu: group.vcpu,
    network: networkView,
  };
}
