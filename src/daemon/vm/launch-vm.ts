// Starting the machine of one VM record: folder, overlay disk, the engine's machine, and the record moved
// to "booting" with the new process and a fresh incarnation. Each step registers its undo beside it; a failure
// part-way leaves nothing behind (for a brand-new VM, not even its record).
import { existsSync } from "node:fs";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { kernelCmdline, type AccelVerdict, type BootNetwork, type Engine, type Machine, type MachineNic, type MachineSpec } from "../../engine/index.ts";
import { createOverlay, createOverlayOn, type ImageStore } from "../../image/index.ts";
import { allocateHostPorts, isPortFree } from "../../net/host-ports.ts";
import type { AttachmentProvider, AttachmentRequest, NetworkAttachment } from "../../net/attachment.ts";
import { crashPoint } from "../../util/crash-points.ts";
import type { Logger } from "../../util/log.ts";
import { Reverter } from "../../util/reverter.ts";
import { templatePaths } from "../templates/template-paths.ts";
import { AgentClient } from "../agent/agent-client.ts";
import { vmPaths, type VmPaths } from "./vm-paths.ts";
import { VmRuntime } from "./vm-runtime.ts";
import type { VmRecord, VmStore } from "./vm-store.ts";

const MiB = 1024 * 1024;

export interface LaunchDeps {
  stateDir: string;
  /** The guest's TSC rate under TCG (see hostTscKhz). */
  tscKhz: number;
  store: VmStore;
  images: ImageStore;
  accel: AccelVerdict;
  /** Runs the machines (see src/engine/machine.ts). */
  engine: Engine;
  log: Logger;
  /** The host address VMs' forwarded ports listen on (the daemon's own; default 127.0.0.1). */
  forwardAddress?: string;
  /**
   * The group id every QEMU runs with: the wall between guests and the host's services keys on it (see
   * src/net/host-isolation.ts). Undefined when the wall is off.
   */
  guestGid: number | undefined;
  /** Makes each machine's NIC (user mode, a TAP on a bridge, a TAP in the VM's own namespace). */
  network: AttachmentProvider;
}

/** What a machine spec needs to know about a machine (a VM record, or a template being made). */
export type MachineShape = Pick<VmRecord, "hostname" | "mac" | "cpus" | "ramBytes"> & Partial<Pick<VmRecord, "portMap" | "denyOutgoing" | "diskMiB">>;

export const DEFAULT_FORWARD_ADDRESS = "127.0.0.1";

/** The NIC the engine makes from an attachment (its MAC is the guest's). */
export function machineNicOf(attachment: NetworkAttachment): MachineNic {
  const { netdev, guest } = attachment;
  if (netdev.kind === "tap") return { kind: "tap", ifname: netdev.ifname, vhost: netdev.vhost, mac: guest.mac };
  return { guestCidr: netdev.guestCidr, gateway: netdev.gateway, dns: netdev.dns, mac: guest.mac, forwards: netdev.forwards, denyOutgoing: netdev.restrict };
}

/**
 * What a cold boot is told on the kernel command line: user mode as always; a TAP NIC its address, gateway
 * and DNS list; a TAP with no address (a template's) nothing, so the guest configures no address at all.
 */
export function bootNetworkOf(attachment: NetworkAttachment): BootNetwork | undefined {
  const { netdev, guest } = attachment;
  if (netdev.kind === "user") return { guestCidr: netdev.guestCidr, gateway: netdev.gateway, dns: netdev.dns };
  if (!guest.address) return undefined;
  return { guestCidr: `${guest.address}/${guest.prefixLength}`, gateway: guest.gateway, dns: guest.dns };
}

/** The provider's question for a machine's NIC. */
export function attachmentRequest(record: MachineShape & { hostgroup: string }, purpose: AttachmentRequest["purpose"]): AttachmentRequest {
  return { hostname: record.hostname, hostgroup: record.hostgroup, mac: record.mac, portMap: record.portMap ?? [], denyOutgoing: record.denyOutgoing ?? false, purpose };
}

/** The engine's spec for a machine; pure apart from the paths it names. */
export function machineSpecFor(
  record: MachineShape,
  paths: Pick<VmPaths, "disk" | "serialLog" | "agentSocket">,
  image: { kernel: string; initrd: string },
  accel: AccelVerdict,
  tscKhz: number,
  attachment: NetworkAttachment,
): MachineSpec {
  return {
    cpus: record.cpus,
    memoryMiB: Math.ceil(record.ramBytes / MiB),
    kernel: image.kernel,
    initrd: image.initrd,
    cmdline: kernelCmdline({ accel: accel.accel, hostname: record.hostname, network: bootNetworkOf(attachment), tscKhz, growRootfs: record.diskMiB != null }),
    disk: { path: paths.disk, format: "qcow2" },
    serialLog: paths.serialLog,
    agentSocket: paths.agentSocket,
    network: machineNicOf(attachment),
    freeze: attachment.needsPlumbing,
  };
}

/** A new VM made from another machine's files instead of the image: a template clone or a fork. */
export interface MachineSource {
  kind: "template" | "fork";
  /** The template whose RAM file backs the VM's memory (a clone's, or the forked VM's); null: none. */
  template: string | null;
  /** The commit a fork comes from. */
  origin?: string;
  /** The disk the VM's overlay is backed by. */
  disk: string;
  /** Console history to start the VM's log with: the boot of the machine it is a copy of. */
  serialLog?: string;
  /** Device (and RAM, unless it is in the template's file) state to resume; absent: boot from the disk. */
  state?: string;
}

export interface LaunchOptions {
  /** Restore: start from this saved state (see Machine.saveState) instead of booting. */
  restoreFrom?: string;
  /**
   * Create the VM from this source. A failed template clone leaves the record as it was (still "creating"),
   * so the caller can boot it cold instead; a failed fork leaves nothing, as a failed create.
   */
  from?: MachineSource;
  /**
   * Aborted when the client that asked for this new VM is gone: a clone stops waiting for its agent (the
   * caller then removes the VM instead of booting it cold).
   */
  signal?: AbortSignal;
}

/** How long a clone's agent may take to answer after the restore before the clone counts as failed. */
const CLONE_AGENT_DEADLINE_MS = 30_000;

export interface StartedMachine {
  machine: Machine;
  /** Connected, when the caller asked for the agent to be checked. */
  agent: AgentClient | undefined;
  attachment: NetworkAttachment;
}

/**
 * Starts the engine's machine for a VM whose disk (and console log) are in place, on the NIC `attachment`
 * gives it: spawned through the attachment's prefix, with its vCPUs stopped while the host side is plumbed; then the
 * saved state is loaded when given and the vCPUs run. A machine resumed on a TAP runs with its link down (the
 * guest still has the template's or the forked VM's MAC and address): the supervisor raises it once the guest
 * took its own identity. With its RAM the template's file when it has one; its agent connected when
 * `checkAgent` (a clone whose agent does not answer counts as failed). Each step registers its undo in `revert`.
 */
export async function startMachine(
  deps: Pick<LaunchDeps, "stateDir" | "accel" | "tscKhz" | "engine" | "guestGid">,
  machine: MachineShape,
  paths: VmPaths,
  image: { kernel: string; initrd: string },
  revert: Reverter,
  options: { template: string | null; resumeFrom?: string; checkAgent: boolean; signal?: AbortSignal; attachment: NetworkAttachment },
): Promise<StartedMachine> {
  const { attachment } = options;
  await rm(paths.machine.control, { force: true });
  await rm(paths.agentSocket, { force: true });
  const spec: MachineSpec = {
    ...machineSpecFor(machine, paths, image, deps.accel, deps.tscKhz, attachment),
    incoming: options.resumeFrom !== undefined,
    // A VM made from a template keeps the template's RAM file as its memory backend for life: its saved
    // states (suspend, commit) name that RAM block, and its disk is backed by the template's anyway.
    ...(options.template ? { memoryFile: { path: templatePaths(deps.stateDir, options.template).ram, shared: false } } : {}),
  };
  const started = await deps.engine.start(spec, paths.machine, { gid: deps.guestGid, argvPrefix: attachment.launchPrefix });
  revert.add("the machine", async () => {
    await started.kill();
    started.dispose();
  });
  if (attachment.needsPlumbing) await attachment.plumb(started.pid, revert, options.signal);
  // Every machine of a template-backed VM saves and loads its states without the template's RAM, so that
  // all of them (clone, suspend, restore, commit, fork) have the same format.
  if (options.template) await started.useMemoryTemplate();
  if (options.resumeFrom !== undefined) {
    // On a TAP the restored guest would speak with the saved machine's MAC and address (another VM's):
    // its link stays down until it took its own (see VmSupervisor's bring-up).
    if (attachment.netdev.kind === "tap") await started.setLink(false);
    await started.loadState(options.resumeFrom);
  } else if (spec.freeze) {
    await started.resume();
  }
  if (!options.checkAgent) return { machine: started, agent: undefined, attachment };
  // Waited for here, while the caller can still fall back (boot cold): later, a silent agent only ends the VM.
  const agent = new AgentClient(paths.agentSocket);
  revert.add("the agent connection", () => agent.close());
  const deadline = AbortSignal.timeout(CLONE_AGENT_DEADLINE_MS);
  await agent.waitForConnection(options.signal ? AbortSignal.any([deadline, options.signal]) : deadline, () => started.running);
  return { machine: started, agent, attachment };
}

/**
 * Launches a record in state creating, stopped, failed or suspended; the caller holds the VM's lock.
 * Resolves with the record in state "booting" and the runtime of its new machine (for a restore, the
 * guest runs on from where it was saved; its agent still has to reconnect).
 */
/**
 * The VM's forwarded ports, each on the host port it had before when that is still free, else on a new one
 * (recorded): a VM keeps its port map across stops and daemon restarts unless another program took a port.
 */
async function freeForwardPorts(deps: LaunchDeps, record: VmRecord): Promise<VmRecord> {
  if (record.portMap.length === 0) return record;
  const address = deps.forwardAddress ?? DEFAULT_FORWARD_ADDRESS;
  const taken: number[] = [];
  for (const [index, mapping] of record.portMap.entries()) {
    if (mapping.host === 0 || !(await isPortFree(address, mapping.host))) taken.push(index);
  }
  if (taken.length === 0) return record;
  const fresh = await allocateHostPorts(address, taken.length);
  const portMap = record.portMap.map((m, index) => (taken.includes(index) ? { guest: m.guest, host: fresh[taken.indexOf(index)] as number } : m));
  deps.store.setPortMap(record.hostname, portMap);
  return { ...record, portMap };
}

export async function launchVm(deps: LaunchDeps, record: VmRecord, options: LaunchOptions = {}): Promise<{ record: VmRecord; runtime: VmRuntime }> {
  const paths = vmPaths(deps.stateDir, record.hostname);
  const revert = new Reverter((what, err) => deps.log.warn({ vm: record.hostname, err }, `Cannot undo ${what}`));
  const source = options.from;
  const isClone = source?.kind === "template";
  // Retried: QEMU's last writes (its log, a QMP transcript line) may land while the folder is being removed.
  const removeFolder = (): Promise<void> => rm(paths.dir, { recursive: true, force: true, maxRetries: 5 });
  if (isClone) {
    revert.add("the clone's files", removeFolder);
  } else if (record.state === "creating") {
    revert.add("the VM record", () => void deps.store.delete(record.hostname, record.incarnation));
    revert.add("the VM folder", removeFolder);
  }
  try {
    // A new VM starts from an empty folder: anything there is debris (say, of a clone that failed), and a
    // stale disk backed by a template must not become this VM's.
    if (record.state === "creating") await removeFolder();
    await mkdir(paths.dir, { recursive: true, mode: 0o700 });
    const image = await deps.images.load(record.image, record.imageVersion);
    if (source) {
      await createOverlayOn(source.disk, "qcow2", paths.disk);
      if (source.serialLog) await copyFile(source.serialLog, paths.serialLog).catch(() => undefined);
    } else if (!existsSync(paths.disk)) {
      await createOverlay(image, paths.disk, record.diskMiB ?? undefined);
      revert.add("the overlay disk", () => rm(paths.disk, { force: true }));
    }
    const template = source ? source.template : record.template;
    let attachment = await deps.network.attachmentFor(attachmentRequest(record, "vm"));
    // User mode's forwards are sockets QEMU binds, so a port another program took moves; TAP modes' port
    // maps are DNAT rules on ports the network manager leased, which nothing else binds.
    if (attachment.mode === "user" && record.portMap.length > 0) {
      record = await freeForwardPorts(deps, record);
      attachment = await deps.network.attachmentFor(attachmentRequest(record, "vm"));
    }
    const started = await startMachine(deps, record, paths, image, revert, {
      attachment,
      template,
      resumeFrom: source ? source.state : options.restoreFrom,
      checkAgent: isClone,
      signal: options.signal,
    });
    if (record.state === "creating") crashPoint("create.qemu-started");
    const booting = deps.store.transition(record, "booting", {
      pid: started.machine.pid,
      pidStartTime: started.machine.startTime,
      incarnation: deps.store.nextIncarnation(),
      lastError: null,
      ...(source ? { template: source.template, origin: source.origin ?? null } : {}),
    });
    revert.commit();
    const detail = source ? { template: source.template, origin: source.origin } : {};
    const message = isClone ? "VM cloned from its template" : source ? `VM forked from commit ${source.origin}` : "VM started";
    deps.log.info({ vm: booting.hostname, pid: started.machine.pid, accel: deps.accel.accel, cpus: record.cpus, ram_mib: Math.ceil(record.ramBytes / MiB), ...detail }, message);
    const runtime = new VmRuntime(booting.hostname, booting.incarnation, started.machine, started.agent ?? paths.agentSocket, attachment, {
      created: record.state === "creating" && source?.kind !== "fork",
    });
    return { record: booting, runtime };
  } catch (err) {
    await revert.revert();
    throw err;
  }
}
