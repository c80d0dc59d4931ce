// A TTstack agent (`tt-agent`) as a host of Corral's controller, read exactly as TTstack's own types are
// (docs/ttstack-wire-notes.md §3, §5): AgentInfo with images by name, Vm with TTstack's five states, Unix
// seconds, `env_id` never null. It says nothing of a VM's outgoing policy, health or fleet, has no hostname
// (the address stands in), and no reboot, stats, shell or log: those are 422 `unsupported_by_host`.
import { Type, type Static } from "@sinclair/typebox";
import { isoOfSeconds, TtAgentInfoFields, TtVmFields } from "../../protocol/ttstack.ts";
import type { CreateAgentVm } from "../../protocol/ttstack-agent.ts";
import type { ReportedVm } from "../host-report.ts";
import type { AgentAddress } from "./agent-api.ts";
import { AgentDriver } from "./agent-driver.ts";

const TtAgentInfoSchema = Type.Object(TtAgentInfoFields);
const TtVmSchema = Type.Object(TtVmFields);
// Made once: the agent API caches a compiled check per schema object, and a fleet has a driver per host.
const TT_SCHEMAS = { info: TtAgentInfoSchema, vm: TtVmSchema, vms: Type.Array(TtVmSchema), created: Type.Object({ vm: TtVmSchema }) };
type TtVm = Static<typeof TtVmSchema>;

/** A VM as TTstack's types give it, in the controller's shape (a Corral daemon's adds its own fields to this). */
export function reportedFromTtVm(vm: TtVm): ReportedVm {
  return {
    id: vm.id,
    env_id: vm.env_id === "" ? null : vm.env_id,
    image: vm.image,
    engine: vm.engine,
    cpu: vm.cpu,
    mem: vm.mem,
    disk: vm.disk,
    ports: Object.keys(vm.port_map)
      .map(Number)
      .sort((a, b) => a - b),
    port_map: vm.port_map,
    state: vm.state,
    ip: vm.ip,
    created_at: isoOfSeconds(vm.created_at),
    last_error: null,
  };
}

/** The host part of http://HOST:PORT, without an IPv6 address's brackets. */
function hostOfUri(uri: string): string {
  return new URL(uri).hostname.replace(/^\[|\]$/g, "");
}

export class TTstackAgentDriver extends AgentDriver<Static<typeof TtAgentInfoSchema>, TtVm, TtVm> {
  constructor(hostId: string, address: AgentAddress) {
    super(hostId, address, {
      kind: "ttstack",
      schemas: TT_SCHEMAS,
      report: (info) => ({ id: info.host_id, hostname: hostOfUri(address.uri), ...info.resource, engines: info.engines, storage: info.storage, images: info.images }),
      vm: reportedFromTtVm,
      // What TTstack's agent knows of a VM's hardware: its disk (a qcow2 clone per VM, crates/agent/src/runtime.rs:187-193) and a tap on its bridge.
      detail: (vm) => ({
        ...reportedFromTtVm(vm),
        hardware: {
          disks: [{ type: "file", device: "disk", driver: { driver_name: vm.engine, type: "qcow2" }, path: "", target: { dev: "vda", bus: "virtio" }, size_mib: vm.disk }],
          networks: [],
        },
      }),
    });
  }

  /** TTstack's CreateVmReq (crates/core/src/api.rs:9-23): every field, `ssh_keys` only when there are some. */
  protected override createBody(body: CreateAgentVm): unknown {
    return {
      vm_id: body.vm_id,
      env_id: body.env_id ?? "",
      image: body.image,
      engine: body.engine ?? "qemu",
      cpu: body.cpu,
      mem: body.mem,
      disk: body.disk,
      ports: body.ports ?? [],
      deny_outgoing: body.deny_outgoing ?? false,
      ...(body.ssh_keys && body.ssh_keys.length > 0 ? { ssh_keys: body.ssh_keys } : {}),
    };
  }
}
