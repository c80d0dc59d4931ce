// A Corral daemon as a host: TTstack's agent API with Corral's fields beside TTstack's (its own VM states,
// health, outgoing policy, host group, fleet, hardware), and the calls a TTstack agent lacks: a reboot, live
// stats (both on the agent API), a VM's shell and serial log (on the daemon's Slicer API).
import type WebSocket from "ws";
import type { ShellQuery } from "../../protocol/slicer.ts";
import {
  AgentInfoSchema,
  AgentVmDetailSchema,
  AgentVmSchema,
  CreateVmRespSchema,
  VmStatsSchema,
  type AgentInfo,
  type AgentVm,
  type AgentVmDetail,
  type VmStats,
} from "../../protocol/ttstack-agent.ts";
import { type HttpResponse, queryString, Transport } from "../../sdk/transport.ts";
import { openWebSocket } from "../../sdk/websocket.ts";
import { Type } from "@sinclair/typebox";
import type { ReportedVm } from "../host-report.ts";
import { CHANGE_TIMEOUT_MS, type AgentAddress } from "./agent-api.ts";
import { AgentDriver } from "./agent-driver.ts";
import { reportedFromTtVm } from "./ttstack-agent-driver.ts";

/** A whole log may take the daemon a while to read; this bounds the wait for each part of the answer. */
const STREAM_TIMEOUT_MS = 30_000;
const STATS_TIMEOUT_MS = 10_000;

const segment = encodeURIComponent;

// Made once: the agent API caches a compiled check per schema object, and a fleet has a driver per host.
const DAEMON_SCHEMAS = { info: AgentInfoSchema, vm: AgentVmDetailSchema, vms: Type.Array(AgentVmSchema), created: CreateVmRespSchema };

function reportedVm(vm: AgentVm): ReportedVm {
  return {
    ...reportedFromTtVm(vm),
    fleet_id: vm.fleet_id,
    hostgroup: vm.hostgroup,
    ports: vm.ports,
    deny_outgoing: vm.deny_outgoing,
    // The daemon's own state (booting, suspended, …), richer than TTstack's `state`.
    state: vm.status,
    mac: vm.mac,
    last_error: vm.last_error,
    ...(vm.started_at === undefined ? {} : { started_at: vm.started_at }),
    ...(vm.health === undefined ? {} : { health: vm.health }),
    ...(vm.health_detail === undefined ? {} : { health_detail: vm.health_detail }),
  };
}

export class CorralDaemonDriver extends AgentDriver<AgentInfo, AgentVm, AgentVmDetail> {
  /** The daemon's Slicer API (shell, logs). */
  private readonly slicer: Transport;

  constructor(hostId: string, address: AgentAddress) {
    super(hostId, address, {
      kind: "corral",
      schemas: DAEMON_SCHEMAS,
      report: (info) => ({
        id: info.host_id,
        hostname: info.hostname,
        threads_per_core: info.threads_per_core,
        ...info.resource,
        engines: info.engines,
        storage: info.storage,
        images: info.images,
      }),
      vm: reportedVm,
      detail: (vm) => ({ ...reportedVm(vm), hardware: vm.hardware }),
    });
    this.slicer = new Transport({ url: address.uri, token: address.token, timeoutMs: STREAM_TIMEOUT_MS });
  }

  override async close(): Promise<void> {
    await Promise.all([super.close(), this.slicer.close()]);
  }

  protected override forceQuery(options: { force?: boolean }): string {
    return options.force ? "?force=true" : "";
  }

  override async rebootVm(id: string, options: { force?: boolean } = {}): Promise<ReportedVm> {
    await this.api.done("POST", `/api/vms/${segment(id)}/reboot${this.forceQuery(options)}`, { timeoutMs: CHANGE_TIMEOUT_MS });
    return this.vm(id);
  }

  override stats(id: string): Promise<VmStats> {
    return this.api.data<VmStats>("GET", `/api/vms/${segment(id)}/stats`, VmStatsSchema, { timeoutMs: STATS_TIMEOUT_MS });
  }

  override openShell(name: string, query: ShellQuery, signal: AbortSignal): Promise<WebSocket> {
    const path = `/vm/${segment(name)}/shell${queryString({ ...query })}`;
    return openWebSocket({ url: this.address.uri, token: this.address.token }, path, {}, signal);
  }

  override logs(name: string, query: { lines?: number }, signal: AbortSignal): Promise<HttpResponse> {
    return this.slicer.send("GET", `/vm/${segment(name)}/logs${queryString({ ...query })}`, { signal, timeoutMs: STREAM_TIMEOUT_MS });
  }
}
