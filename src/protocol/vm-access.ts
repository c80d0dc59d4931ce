// How to reach a VM of an environment from its FleetVm: the ssh command line and `host:port` for each mapped
// port, as the CLI prints them and the dashboard shows them. No node: imports (the dashboard uses it too).
import type { FleetVm } from "./controller.ts";

/** The address without IPv6 brackets: what ssh wants. */
export const bareHost = (addr: string): string => addr.replace(/^\[(.*)\]$/, "$1");

/** `host:port`, an IPv6 host in brackets. */
export const hostPort = (addr: string, port: number): string => (bareHost(addr).includes(":") ? `[${bareHost(addr)}]:${port}` : `${addr}:${port}`);

/** `ssh -p PORT root@HOST` through the port mapped to the VM's port 22; undefined before it is mapped. */
export function sshCommand(vm: Pick<FleetVm, "host_addr" | "port_map">): string | undefined {
  const port = vm.port_map["22"];
  return port === undefined ? undefined : `ssh -p ${port} root@${bareHost(vm.host_addr)}`;
}
