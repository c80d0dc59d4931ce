// What the routes on a host's VMs ask of the host (the seed's /api/hosts/HOST/vms/NAME/... and Virtumancer's
// /api/v1 ones): a power action (then the host's report is refreshed at once, so /ws tells its clients), the
// VM's hardware, its live stats, its shell and log (vm-console.ts). A disconnected host is not called (409). A
// host's failure comes back as hostFailure says: its 4xx as they are, a host that does not answer as 502.
import type { VmHardware, VmStats } from "../protocol/ttstack-agent.ts";
import type { V1PowerAction } from "../protocol/virtumancer.ts";
import type { ControllerContext } from "./context.ts";
import { assertConnected } from "./host-connections.ts";
import { hostFailure, type HostDriver } from "./host-driver.ts";

/** Virtumancer's power actions (libvirt's create, shutdown, reboot, destroy, reset) as the daemon's calls. */
const POWER: Record<V1PowerAction, (driver: HostDriver, name: string) => Promise<unknown>> = {
  start: (driver, name) => driver.startVm(name),
  shutdown: (driver, name) => driver.stopVm(name),
  reboot: (driver, name) => driver.rebootVm(name),
  forceoff: (driver, name) => driver.stopVm(name, { force: true }),
  forcereset: (driver, name) => driver.rebootVm(name, { force: true }),
};

/** The driver to a registered host that is not disconnected (404 `host_not_found`, 409 `conflict` otherwise). */
export async function linkToHost(ctx: ControllerContext, hostId: string): Promise<HostDriver> {
  const host = await ctx.store.getHost(hostId);
  assertConnected(host);
  return ctx.drivers.forHost(host);
}

async function ask<T>(ctx: ControllerContext, hostId: string, call: (driver: HostDriver) => Promise<T>): Promise<T> {
  const driver = await linkToHost(ctx, hostId);
  try {
    return await call(driver);
  } catch (err) {
    throw hostFailure(hostId, err);
  }
}

export async function powerVm(ctx: ControllerContext, hostId: string, vmName: string, action: V1PowerAction): Promise<void> {
  await ask(ctx, hostId, (driver) => POWER[action](driver, vmName));
  // The host's list changed: refresh the cache now rather than at the next heartbeat.
  await ctx.refreshHost(hostId);
}

export async function vmHardware(ctx: ControllerContext, hostId: string, vmName: string): Promise<VmHardware> {
  return (await ask(ctx, hostId, (driver) => driver.vm(vmName))).hardware;
}

export function vmStats(ctx: ControllerContext, hostId: string, vmName: string): Promise<VmStats> {
  return ask(ctx, hostId, (driver) => driver.stats(vmName));
}
