// A few clones of a group's template kept restored, idle and warmed up (`warm_pool: N` in the group's
// configuration), so that a create only has to name one and give it its identity. Under emulation most of a
// clone's start is the guest running code for the first time in a new QEMU process (each instruction is
// translated first); a pooled clone has done that already. An idle pooled clone costs what an idle sandbox
// does. Pooled clones live in `vms/.pool-ID/`; when one is taken its folder is renamed to the VM's (QEMU
// keeps its open files and the daemon its connections; the sockets move with the folder) and the pool name
// becomes a link to it, for the paths QEMU still knows it by.
import { randomBytes } from "node:crypto";
import { copyFile, mkdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import type { AccelVerdict, Engine, Machine } from "../../engine/index.ts";
import { createOverlayOn, type ImageStore } from "../../image/index.ts";
import type { AttachmentProvider, NetworkAttachment } from "../../net/attachment.ts";
import { randomMac } from "../../net/user-network.ts";
import type { Logger } from "../../util/log.ts";
import { Reverter } from "../../util/reverter.ts";
import type { AgentClient } from "../agent/agent-client.ts";
import type { DaemonConfig, HostGroupConfig } from "../config.ts";
import { attachmentRequest, startMachine } from "../vm/launch-vm.ts";
import { warmUpAgent } from "./build-template.ts";
import { vmPathsIn, vmsDir } from "../vm/vm-paths.ts";
import type { VmRecord } from "../vm/vm-store.ts";
import type { TemplateLease, TemplateManager } from "./template-manager.ts";
import type { Admission } from "../admission.ts";

/** A pooled clone handed to a new VM: its folder is already the VM's; `release` once the record names its template. */
export interface PooledClone {
  templateId: string;
  /** Its link is still down on a TAP (`machine.link`): raised when the VM's identity (MAC and address) is in. */
  machine: Machine;
  agent: AgentClient;
  /** The clone's NIC (in TAP modes its lease is the pool's until the VM's record takes it over). */
  attachment: NetworkAttachment;
  release(): void;
}

interface PoolEntry {
  dir: string;
  lease: TemplateLease;
  machine: Machine;
  agent: AgentClient;
  attachment: NetworkAttachment;
}

export interface WarmPoolDeps {
  stateDir: string;
  config: DaemonConfig;
  images: ImageStore;
  templates: TemplateManager;
  accel: AccelVerdict;
  tscKhz: number;
  /** Runs the clones' machines (see src/engine/machine.ts). */
  engine: Engine;
  log: Logger;
  /**
   * The group id every QEMU runs with: the wall between guests and the host's services keys on it (see
   * src/net/host-isolation.ts). Undefined when the wall is off.
   */
  guestGid: number | undefined;
  /** A refill boots a clone: it must fit beside the user's VMs, never instead of them. */
  admission: Admission;
  /** Pool clones get their NIC like any VM (in TAP modes: a lease of the pool's, see AttachmentRequest). */
  network: AttachmentProvider;
}

const POOL_HOSTNAME = "corral-pool";

/**
 * The clones kept for a group. None in bridge and isolated groups for now: a pooled clone would be plumbed
 * with an address of its own, while the VM that takes it was leased another at its insert; until a hand-out
 * moves the NIC onto the VM's lease, their creates restore from the template (a TAP plumb adds ~50 ms).
 */
export function poolSizeOf(group: Pick<HostGroupConfig, "warmPool" | "network">): number {
  return group.network.mode === "user" ? group.warmPool : 0;
}

export class WarmPool {
  private readonly idle = new Map<string, PoolEntry[]>();
  private readonly filling = new Set<string>();
  /** The refills running now: a stop waits for them, so that no clone they start outlives the daemon. */
  private readonly refills = new Set<Promise<void>>();
  /** Aborted on stop: a clone being warmed up gives up at once. */
  private readonly stopping = new AbortController();
  /** Groups whose last refill was refused by admission control (logged once until one succeeds). */
  private readonly skipped = new Set<string>();
  private stopped = false;

  constructor(private readonly deps: WarmPoolDeps) {
    for (const group of deps.config.hostGroups.filter((g) => g.warmPool > 0 && poolSizeOf(g) === 0)) {
      deps.log.info(
        { hostgroup: group.name, mode: group.network.mode },
        `Host group "${group.name}" keeps no warm pool: its network is in ${group.network.mode} mode, where each create restores its own clone`,
      );
    }
    deps.templates.onReady((group) => {
      // A new template makes the pooled clones of the old one useless: replace them.
      const current = deps.templates.acquireCurrent(group);
      current?.release();
      for (const stale of (this.idle.get(group) ?? []).filter((e) => e.lease.id !== current?.id)) void this.discard(group, stale);
      this.refill(group);
    });
    deps.templates.pooledCounts = () => this.sizes();
  }

  /** How many clones are pooled now, per group. */
  sizes(): Record<string, number> {
    return Object.fromEntries(this.deps.config.hostGroups.map((g) => [g.name, this.idle.get(g.name)?.length ?? 0]));
  }

  /**
   * Takes a pooled clone for `record` when one of the right template is idle, moving its folder to `dir`
   * (the VM's); undefined otherwise. A refill starts either way.
   */
  async take(record: VmRecord, dir: string): Promise<PooledClone | undefined> {
    const group = this.groupOf(record.hostgroup);
    if (!group || poolSizeOf(group) === 0) return undefined;
    const wanted = this.deps.templates.templateFor(record);
    const entries = this.idle.get(group.name) ?? [];
    // Clones of a template that is no longer current are of no use: end them.
    for (const stale of entries.filter((e) => e.lease.id !== wanted)) void this.discard(group.name, stale);
    const entry = (this.idle.get(group.name) ?? []).shift();
    this.refill(group.name);
    if (!entry) return undefined;
    try {
      await rename(entry.dir, dir);
      // QEMU holds paths in the pool folder and may open one again (a disk is reopened by name when QEMU
      // changes its permissions, as every migration does): that name becomes a link to the VM's folder.
      await symlink(basename(dir), entry.dir);
      await writeFile(join(dir, "alias"), basename(entry.dir));
    } catch (err) {
      this.deps.log.warn({ err }, "Cannot take a clone from the warm pool");
      await this.end(entry);
      return undefined;
    }
    return {
      templateId: entry.lease.id,
      machine: entry.machine,
      agent: entry.agent,
      attachment: entry.attachment,
      release: () => entry.lease.release(),
    };
  }

  /** Keeps the group's pool at its size, in the background, one clone at a time. */
  refill(groupName: string): void {
    const group = this.groupOf(groupName);
    if (!group || poolSizeOf(group) === 0 || this.stopped || this.filling.has(groupName)) return;
    this.filling.add(groupName);
    const refill = (async () => {
      try {
        while (!this.stopped && (this.idle.get(groupName)?.length ?? 0) < poolSizeOf(group)) {
          const lease = this.deps.templates.acquireCurrent(groupName);
          if (!lease) return;
          const admitted = this.deps.admission.tryAdmit({
            what: `a warm-pool clone of host group ${JSON.stringify(groupName)}`,
            group,
            ramBytes: group.ramBytes,
            priority: "background",
            joinsGroup: false,
          });
          if ("refused" in admitted) {
            // Tried again at the next create (each one refills), when VMs may have gone.
            lease.release();
            if (!this.skipped.has(groupName)) this.deps.log.warn({ hostgroup: groupName, reason: admitted.refused.message }, "Warm-pool refill skipped");
            this.skipped.add(groupName);
            return;
          }
          this.skipped.delete(groupName);
          const entry = await this.restore(group, lease)
            .catch((err: unknown) => {
              lease.release();
              this.deps.log.warn({ hostgroup: groupName, err }, "Cannot add a clone to the warm pool");
              return undefined;
            })
            .finally(() => admitted.reservation.release());
          if (!entry) return;
          if (this.stopped) return void (await this.end(entry));
          const list = this.idle.get(groupName) ?? [];
          list.push(entry);
          this.idle.set(groupName, list);
        }
      } finally {
        this.filling.delete(groupName);
      }
    })();
    this.refills.add(refill);
    void refill.finally(() => this.refills.delete(refill));
  }

  /** Ends every pooled clone. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    const all = [...this.idle.values()].flat();
    this.idle.clear();
    await Promise.all(all.map((entry) => this.end(entry)));
    // A refill part-way through a restore ends its clone itself (it sees `stopped`, or its warm-up is
    // aborted and the restore reverted): wait for that, or the clone's QEMU would outlive the daemon.
    await Promise.allSettled([...this.refills]);
  }

  private groupOf(name: string): HostGroupConfig | undefined {
    return this.deps.config.hostGroups.find((g) => g.name === name);
  }

  /** A clone restored into a pool folder, its agent connected and warmed up (a provisional identity, an exec). */
  private async restore(group: HostGroupConfig, lease: TemplateLease): Promise<PoolEntry> {
    const poolName = `pool-${randomBytes(4).toString("hex")}`;
    const dir = join(vmsDir(this.deps.stateDir), `.${poolName}`);
    const paths = vmPathsIn(dir);
    const revert = new Reverter((what, err) => this.deps.log.warn({ err }, `Cannot undo ${what}`));
    revert.add("the pool folder", () => rm(dir, { recursive: true, force: true }));
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await createOverlayOn(lease.disk, "qcow2", paths.disk);
      await copyFile(lease.serialLog, paths.serialLog).catch(() => undefined);
      const image = await this.deps.images.load(group.image, lease.imageVersion);
      const machine = { hostname: POOL_HOSTNAME, mac: randomMac(), cpus: group.vcpu, ramBytes: group.ramBytes };
      // Asked for under the pool folder's name (the owner of its lease until a VM takes it).
      const attachment = await this.deps.network.attachmentFor(attachmentRequest({ ...machine, hostname: poolName, hostgroup: group.name }, "vm"));
      const started = await startMachine(this.deps, machine, paths, image, revert, { template: lease.id, resumeFrom: lease.state, checkAgent: true, attachment });
      const agent = started.agent as AgentClient;
      await warmUpAgent(agent, { hostname: POOL_HOSTNAME, mac: attachment.guest.mac }, AbortSignal.any([this.stopping.signal, AbortSignal.timeout(60_000)]));
      revert.commit();
      const entry: PoolEntry = { dir, lease, machine: started.machine, agent, attachment };
      void started.machine.exited.then(() => this.forget(group.name, entry));
      return entry;
    } catch (err) {
      await revert.revert();
      throw err;
    }
  }

  /** A pooled clone whose QEMU ended by itself: out of the pool, files gone. */
  private forget(groupName: string, entry: PoolEntry): void {
    const list = this.idle.get(groupName);
    if (!list?.includes(entry)) return;
    list.splice(list.indexOf(entry), 1);
    entry.lease.release();
    void rm(entry.dir, { recursive: true, force: true });
    this.refill(groupName);
  }

  private async discard(groupName: string, entry: PoolEntry): Promise<void> {
    const list = this.idle.get(groupName);
    if (list?.includes(entry)) list.splice(list.indexOf(entry), 1);
    await this.end(entry);
  }

  private async end(entry: PoolEntry): Promise<void> {
    entry.agent.close();
    await entry.machine.kill();
    entry.machine.dispose();
    await rm(entry.dir, { recursive: true, force: true });
    entry.lease.release();
  }
}
