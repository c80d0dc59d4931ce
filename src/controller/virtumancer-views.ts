// The controller's records of hosts and what hosts report of their VMs, as Virtumancer's wire shows them
// (/api/v1): libvirt's shapes and units, each field derived from the host's report, or set to the value
// Virtumancer's code gives when libvirt does not know it. docs/virtumancer-wire-notes.md traces each field.
// Pure: records in, answers out.
import { createHash } from "node:crypto";
import { libvirtState } from "../protocol/controller.ts";
import { CorralError, quote } from "../protocol/errors.ts";
import type { VmHardware } from "../protocol/ttstack-agent.ts";
import type { V1Hardware, V1Host, V1HostInfo, V1Vm } from "../protocol/virtumancer.ts";
import type { HostRecord } from "./db/index.ts";
import type { ReportedVm } from "./host-report.ts";

const KIB_PER_MIB = 1024;
const RUNNING = 1;
/** libvirt's states of a domain that has no process: no domain id (0 no state, 5 shut off, 6 crashed). */
const INACTIVE = new Set([0, 5, 6]);

/**
 * A host as Virtumancer lists it: `CONNECTED` while heartbeats get answers, `ERROR` once they fail,
 * `DISCONNECTED` (and not to be reconnected on its own) after a disconnect.
 */
export function v1Host(host: Pick<HostRecord, "id" | "uri" | "state" | "disconnected">): V1Host {
  const state = host.disconnected ? "DISCONNECTED" : host.state === "online" ? "CONNECTED" : "ERROR";
  return { id: host.id, uri: host.uri, state, task_state: "", auto_reconnect_disabled: host.disconnected };
}

/** The host's last report in libvirt's virNodeInfo terms: memory in KiB, threads per core. */
export function v1HostInfo(host: Pick<HostRecord, "id" | "hostname" | "info">): V1HostInfo {
  const info = host.info;
  if (info === null) throw new CorralError("host_unreachable", `Host ${quote(host.id)} has not answered yet: there is no information about it to show`);
  const threads = Math.max(1, info.threads_per_core ?? 1);
  return {
    hostname: host.hostname,
    cpu: info.cpu_total,
    memory: info.mem_total * KIB_PER_MIB,
    cores: Math.max(1, Math.floor(info.cpu_total / threads)),
    threads,
  };
}

/**
 * A stable UUID for the VM (libvirt gives each domain one): from its host, name and creation time, so that a
 * VM made again under the same name gets another. Formatted as a name-based (version 5) UUID.
 */
export function domainUuid(hostId: string, vm: Pick<ReportedVm, "id" | "created_at">): string {
  const hex = createHash("sha1").update(`corral-domain\0${hostId}\0${vm.id}\0${vm.created_at}`).digest("hex").slice(0, 32).split("");
  hex[12] = "5";
  hex[16] = ((parseInt(hex[16] ?? "0", 16) & 0x3) | 0x8).toString(16);
  const h = hex.join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** Seconds since the VM's current run started; -1 when it does not run, as Virtumancer's connector gives. */
export function uptimeSeconds(vm: Pick<ReportedVm, "state" | "started_at">, now: Date): number {
  if (libvirtState(vm.state) !== RUNNING || !vm.started_at) return -1;
  const started = Date.parse(vm.started_at);
  return Number.isNaN(started) ? -1 : Math.max(0, Math.floor((now.getTime() - started) / 1000));
}

/** What a VM is for, in a line: its environment, else its host group (a TTstack agent reports neither). */
export function vmDescription(vm: Pick<ReportedVm, "env_id" | "hostgroup">): string {
  if (vm.env_id) return `environment ${vm.env_id}`;
  return vm.hostgroup === undefined ? "" : `host group ${vm.hostgroup}`;
}

/**
 * One VM of a host's list: Virtumancer's VMView fields and its connector's VMInfo fields (its UI reads
 * `vcpu`, `memory`, `max_mem`, `uptime` from the list). `position` is the VM's index in the host's report.
 */
export function v1Vm(hostId: string, vm: ReportedVm, position: number, now: Date): V1Vm {
  const state = libvirtState(vm.state);
  const kib = vm.mem * KIB_PER_MIB;
  const view: V1Vm = {
    db_id: position + 1,
    name: vm.id,
    description: vmDescription(vm),
    vcpu_count: vm.cpu,
    memory_bytes: kib * 1024,
    is_template: false,
    cpu_model: "",
    cpu_topology_json: "",
    state,
    graphics: { vnc: false, spice: false },
    max_mem: kib,
    // libvirt's current allocation: the whole memory, whether the domain runs or not (no balloon here).
    memory: kib,
    cpu_time: 0,
    uptime: uptimeSeconds(vm, now),
    id: INACTIVE.has(state) ? 0 : position + 1,
    // A libvirt host's domain has its own; a daemon's VM gets a stable one.
    uuid: vm.uuid ?? domainUuid(hostId, vm),
    vcpu: vm.cpu,
    persistent: true,
    autostart: false,
    status: vm.state,
    env_id: vm.env_id,
  };
  if (vm.health !== undefined) view.health = vm.health;
  if (vm.health_detail !== undefined) view.health_detail = vm.health_detail;
  return view;
}

/**
 * The host's hardware answer in libvirt's domain-XML shape as Virtumancer writes it: each disk's `Source`
 * beside its `path`, each NIC's `source.bridge` (only bridge mode has one), `model` under both names
 * (the server's `model_type`, the UI's `type`) and `target.dev`, the name `net_stats` gives the NIC.
 */
export function v1Hardware(hardware: VmHardware): V1Hardware {
  return {
    disks: hardware.disks.map((disk) => ({
      type: disk.type,
      device: disk.device,
      driver: { driver_name: disk.driver.driver_name, type: disk.driver.type },
      Source: disk.type === "block" ? { File: "", Dev: disk.path } : { File: disk.path, Dev: "" },
      path: disk.path,
      target: { dev: disk.target.dev, bus: disk.target.bus },
      size_mib: disk.size_mib,
    })),
    networks: hardware.networks.map((nic, index) => ({
      type: nic.type,
      mac: { address: nic.mac.address },
      // `network`: the libvirt network a NIC of a libvirt host is plugged into, as Virtumancer's later connector has it.
      source: { bridge: nic.source.bridge ?? "", network: nic.source.network ?? "" },
      model: { model_type: nic.model.model_type, type: nic.model.model_type },
      // Daemons before issue 14 name no device: their net_stats call the NIC eth0.
      target: { dev: nic.target?.dev ?? `eth${index}` },
    })),
  };
}
