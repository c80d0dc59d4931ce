// The calls every kind of host answers, written once over TTstack's agent API: a host's report, its VMs,
// creating, deleting, stopping and starting one. TTstack answers a stop or a start with `{"ok":true}`, so the
// VM is read again after it, as TTstack's own controller does (crates/ctl/src/handler.rs:494-497). Each kind
// says how its answers are shaped and read (corral-daemon-driver.ts, ttstack-agent-driver.ts); what a kind
// cannot do is 422 `unsupported_by_host`.
import type { TSchema } from "@sinclair/typebox";
import type WebSocket from "ws";
import { CorralError } from "../../protocol/errors.ts";
import type { ShellQuery } from "../../protocol/slicer.ts";
import type { CreateAgentVm, VmStats } from "../../protocol/ttstack-agent.ts";
import { CorralApiError, type HttpResponse } from "../../sdk/transport.ts";
import type { HostDriver } from "../host-driver.ts";
import type { HostKind, HostReport, ReportedVm, ReportedVmDetail } from "../host-report.ts";
import { AgentApi, CHANGE_TIMEOUT_MS, READ_TIMEOUT_MS, type AgentAddress } from "./agent-api.ts";

/** How one kind of host shapes its answers, and how the controller reads them. */
export interface AgentDialect<Info, Vm, Detail> {
  kind: HostKind;
  schemas: { info: TSchema; vm: TSchema; vms: TSchema; created: TSchema };
  report(info: Info): HostReport;
  vm(vm: Vm): ReportedVm;
  detail(vm: Detail): ReportedVmDetail;
}

const segment = encodeURIComponent;

export class AgentDriver<Info, Vm, Detail> implements HostDriver {
  protected readonly api: AgentApi;

  constructor(
    protected readonly hostId: string,
    protected readonly address: AgentAddress,
    private readonly dialect: AgentDialect<Info, Vm, Detail>,
  ) {
    this.api = new AgentApi(hostId, address, READ_TIMEOUT_MS);
  }

  get kind(): HostKind {
    return this.dialect.kind;
  }

  close(): Promise<void> {
    return this.api.close();
  }

  async info(): Promise<HostReport> {
    return this.dialect.report(await this.api.data<Info>("GET", "/api/info", this.dialect.schemas.info));
  }

  async vms(): Promise<ReportedVm[]> {
    return (await this.api.data<Vm[]>("GET", "/api/vms", this.dialect.schemas.vms)).map((vm) => this.dialect.vm(vm));
  }

  async vm(id: string): Promise<ReportedVmDetail> {
    return this.dialect.detail(await this.api.data<Detail>("GET", `/api/vms/${segment(id)}`, this.dialect.schemas.vm));
  }

  async createVm(body: CreateAgentVm): Promise<ReportedVm> {
    const created = await this.api.data<{ vm: Vm }>("POST", "/api/vms", this.dialect.schemas.created, { body: this.createBody(body), timeoutMs: CHANGE_TIMEOUT_MS });
    return this.dialect.vm(created.vm);
  }

  /** The create's body as this kind of host reads it. */
  protected createBody(body: CreateAgentVm): unknown {
    return body;
  }

  async deleteVm(id: string): Promise<true> {
    try {
      await this.api.done("DELETE", `/api/vms/${segment(id)}`, { timeoutMs: CHANGE_TIMEOUT_MS });
    } catch (err) {
      if (!(err instanceof CorralApiError && err.status === 404)) throw err;
    }
    return true;
  }

  async stopVm(id: string, options: { force?: boolean } = {}): Promise<ReportedVm> {
    await this.api.done("POST", `/api/vms/${segment(id)}/stop${this.forceQuery(options)}`, { timeoutMs: CHANGE_TIMEOUT_MS });
    return this.vm(id);
  }

  async startVm(id: string): Promise<ReportedVm> {
    await this.api.done("POST", `/api/vms/${segment(id)}/start`, { timeoutMs: CHANGE_TIMEOUT_MS });
    return this.vm(id);
  }

  /** `?force=true` where the kind tells a hard stop from a clean one (TTstack's agent does not). */
  protected forceQuery(_options: { force?: boolean }): string {
    return "";
  }

  protected unsupported(what: string): CorralError {
    return new CorralError(
      "unsupported_by_host",
      `Cannot ${what} on host ${JSON.stringify(this.hostId)}: it is a ${this.dialect.kind === "ttstack" ? "TTstack agent" : this.dialect.kind}, whose API has no such call`,
    );
  }

  async rebootVm(id: string, _options: { force?: boolean } = {}): Promise<ReportedVm> {
    throw this.unsupported(`reboot VM ${JSON.stringify(id)}`);
  }

  async stats(id: string): Promise<VmStats> {
    throw this.unsupported(`read the live stats of VM ${JSON.stringify(id)}`);
  }

  async openShell(name: string, _query: ShellQuery, _signal: AbortSignal): Promise<WebSocket> {
    throw this.unsupported(`open a shell in VM ${JSON.stringify(name)}`);
  }

  async logs(name: string, _query: { lines?: number }, _signal: AbortSignal): Promise<HttpResponse> {
    throw this.unsupported(`read the serial log of VM ${JSON.stringify(name)}`);
  }
}
