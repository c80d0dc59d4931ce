// The ssh command line for a VM of an environment: its host's address and the port mapped to its port 22.
import type { FleetVm } from "../../../src/protocol/controller.ts";

export function sshCommand(vm: Pick<FleetVm, "host_addr" | "port_map">): string | undefined {
  const port = vm.port_map["22"];
  if (port === undefined) return undefined;
  return `ssh -p ${port} root@${vm.host_addr}`;
}
