// A libvirt daemon as a host, reached by its connection URI (`qemu:///system`, `qemu+ssh://user@host/system`)
// through libvirt's own client, `virsh`. Its domains are the host's VMs; libvirt's units (KiB of memory,
// nanoseconds of CPU time) are read here into the controller's. Environments are not made on such a host:
// creating or deleting a VM there is 4xx `unsupported_by_host`.
// (Issue 15: the seam commit gives this driver its place and its constructor; the driver itself follows.)
import type { Dispatcher } from "undici";
import type WebSocket from "ws";
import { CorralError } from "../../protocol/errors.ts";
import type { ShellQuery } from "../../protocol/slicer.ts";
import type { CreateAgentVm, VmStats } from "../../protocol/ttstack-agent.ts";
import type { HostDriver } from "../host-driver.ts";
import type { HostReport, ReportedVm, ReportedVmDetail } from "../host-report.ts";

export { parseLibvirtUri, type LibvirtUri, type LibvirtTransport } from "./libvirt/uri.ts";

/** Is `uri` a libvirt connection URI (a driver name and an optional transport: `qemu:`, `qemu+ssh:`, …)? */
export function isLibvirtUri(uri: string): boolean {
  return /^[a-z][a-z0-9]*(\+[a-z0-9]+)?:\/\//i.test(uri) && !/^https?:\/\//i.test(uri);
}

export class LibvirtDriver implements HostDriver {
  readonly kind = "libvirt" as const;

  constructor(
    private readonly hostId: string,
    private readonly address: { uri: string },
  ) {}

  private unsupported(what: string): CorralError {
    return new CorralError("unsupported_by_host", `Cannot ${what} on host ${JSON.stringify(this.hostId)}: it is a libvirt daemon (${this.address.uri})`);
  }

  async close(): Promise<void> {}

  async info(): Promise<HostReport> {
    throw this.unsupported("read the host's resources");
  }

  async vms(): Promise<ReportedVm[]> {
    throw this.unsupported("list VMs");
  }

  async vm(id: string): Promise<ReportedVmDetail> {
    throw this.unsupported(`read VM ${JSON.stringify(id)}`);
  }

  async stats(id: string): Promise<VmStats> {
    throw this.unsupported(`read the live stats of VM ${JSON.stringify(id)}`);
  }

  async createVm(body: CreateAgentVm): Promise<ReportedVm> {
    throw this.unsupported(`create VM ${JSON.stringify(body.vm_id)}`);
  }

  async deleteVm(id: string): Promise<true> {
    throw this.unsupported(`delete VM ${JSON.stringify(id)}`);
  }

  async stopVm(id: string, _options?: { force?: boolean }): Promise<ReportedVm> {
    throw this.unsupported(`stop VM ${JSON.stringify(id)}`);
  }

  async startVm(id: string): Promise<ReportedVm> {
    throw this.unsupported(`start VM ${JSON.stringify(id)}`);
  }

  async rebootVm(id: string, _options?: { force?: boolean }): Promise<ReportedVm> {
    throw this.unsupported(`reboot VM ${JSON.stringify(id)}`);
  }

  async openShell(name: string, _query: ShellQuery, _signal: AbortSignal): Promise<WebSocket> {
    throw this.unsupported(`open a shell in VM ${JSON.stringify(name)}`);
  }

  async logs(name: string, _query: { lines?: number }, _signal: AbortSignal): Promise<Dispatcher.ResponseData> {
    throw this.unsupported(`read the serial log of VM ${JSON.stringify(name)}`);
  }
}
