// Commit and fork: a running VM's disk (and, when asked, its memory and devices) saved as a commit, and new
// sandboxes made from a commit. The VM is frozen for the moment of the copy so that disk and memory agree;
// it runs on afterwards. A fork from a memory commit resumes where the VM was (its processes, its /tmp)
// and then takes its own identity; a fork from a disk-only commit boots from the disk.
import { overrideOfRecord } from "./vm-network.ts";
import type { PolicyOverride } from "../../net/policy.ts";
import { copyFile, mkdir, rm } from "node:fs/promises";
import { CorralError } from "../../protocol/errors.ts";
import type { CommitMeta, CommitStore } from "../commits/commit-store.ts";
import type { HostGroupConfig } from "../config.ts";
import type { TemplateManager } from "../templates/template-manager.ts";
import { backendKind } from "../../net/default-attachments.ts";
import { newSandboxLifetime } from "./lifetime-policy.ts";
import { vmPaths } from "./vm-paths.ts";
import type { NewVm, VmRecord } from "./vm-store.ts";
import { assertNotFrozen, type VmSupervisor } from "./vm-supervisor.ts";
import { storageFullError } from "../../util/storage-full.ts";

export interface CommitRequest {
  memory: boolean;
  tags: string[];
  labels: Record<string, string>;
  cacheKey: string;
}

export interface ForkRequest {
  tags?: string[];
  sshKeys?: string[];
  /** How long the fork lives (ms); absent: its group's default (see newSandboxLifetime). */
  lifetimeMs?: number;
  /** The fork's own allow/drop lists (Slicer's fork policy: an absent list inherits, `[]` clears); bridge and isolated groups. */
  networkPolicy?: PolicyOverride;
}

export interface CommitInfo extends Omit<CommitMeta, "template" | "net"> {
  size_bytes: number;
  /** The VMs forked from this commit that still exist (while there are any, it cannot be deleted). */
  forks: string[];
}

type NewVmFactory = (
  group: HostGroupConfig,
  fields: Pick<NewVm, "cpus" | "ramBytes" | "persistent" | "userdata" | "sshKeys" | "importUser" | "tags" | "imageVersion" | "lifetimeMs" | "networkPolicy">,
) => NewVm;

export class VmCommits {
  constructor(
    private readonly vms: VmSupervisor,
    private readonly commits: CommitStore,
    private readonly group: (name: string) => HostGroupConfig,
    private readonly newVm: NewVmFactory,
    private readonly templates: TemplateManager | undefined,
  ) {}

  /** Saves the VM's disk (and memory when asked) as a new commit; the VM runs on. */
  commit(hostname: string, request: CommitRequest): Promise<CommitInfo> {
    return this.vms.lock.run(hostname, async () => {
      const record = this.vms.record(hostname);
      const runtime = this.vms.runtime(hostname);
      if (!runtime || (record.state !== "running" && record.state !== "paused")) {
        throw new CorralError("vm_not_running", `Cannot commit VM ${JSON.stringify(hostname)}: it is ${record.state}`);
      }
      // Its last writes are held in QEMU, not on its disk, and resuming it for the copy would only retry them.
      assertNotFrozen(runtime, this.vms.deps.stateDir);
      const id = this.commits.newId();
      const staging = this.commits.stagingPaths(id);
      const paths = vmPaths(this.vms.deps.stateDir, hostname);
      const wasRunning = record.state === "running";
      try {
        await mkdir(staging.dir, { recursive: true, mode: 0o700 });
        // The guest writes its page cache out first, so that even a disk-only commit holds what it wrote.
        if (wasRunning) await runtime.syncDisks();
        // Stopping the vCPUs also drains and flushes the engine's own disk cache: the overlay file is consistent.
        await runtime.machine.withVcpusStopped(async () => {
          await copyFile(paths.disk, staging.disk);
          await copyFile(paths.serialLog, staging.serialLog).catch(() => undefined);
          // The vCPUs are stopped already: the save leaves them so, and they run again after the copy either way.
          if (request.memory) await runtime.machine.saveState(staging.state, { after: "stay" });
        });
        const meta: CommitMeta = {
          commit_id: id,
          source_hostname: hostname,
          hostgroup: record.hostgroup,
          tags: request.tags,
          labels: request.labels,
          cache_key: request.cacheKey,
          memory: request.memory,
          created_at: new Date().toISOString(),
          image: record.image,
          image_version: record.imageVersion,
          cpus: record.cpus,
          ram_bytes: record.ramBytes,
          template: record.template,
          net: runtime.attachment?.netdev.kind ?? backendKind(this.group(record.hostgroup)),
        };
        await this.commits.publish(id, meta);
        this.vms.log.info({ vm: hostname, commit: id, memory: request.memory }, "VM committed");
        return this.info(meta);
      } catch (err) {
        await rm(staging.dir, { recursive: true, force: true });
        if (err instanceof CorralError) throw err;
        throw (
          storageFullError(err, `commit ${id} of VM ${JSON.stringify(hostname)}`, this.vms.deps.stateDir) ??
          new CorralError("engine_failed", `Cannot commit VM ${JSON.stringify(hostname)}: ${(err as Error).message}`, { cause: err })
        );
      }
    });
  }

  /**
   * A new sandbox in the commit's host group, from the commit's disk (and memory, if it has it); like a
   * create, unacknowledged until its client was answered (`signal`: aborted when that client is gone).
   */
  async fork(commitId: string, request: ForkRequest, signal?: AbortSignal): Promise<VmRecord> {
    if (this.vms.stopping.signal.aborted) throw new CorralError("unavailable", "The daemon is shutting down");
    const meta = await this.commits.get(commitId);
    const paths = this.commits.paths(commitId);
    const group = this.group(meta.hostgroup);
    assertSameBackend(commitId, meta, group);
    const lifetimeMs = newSandboxLifetime(group, request.lifetimeMs);
    const reservation = this.vms.admit({
      what: `a fork of commit ${commitId} in host group ${JSON.stringify(group.name)}`,
      group,
      ramBytes: meta.ram_bytes,
      priority: "user",
      joinsGroup: true,
    });
    const record = this.vms.recordAdmitted(reservation, `the record of a fork of commit ${commitId}`, () =>
      this.vms.store.insertSandbox(
        {
          ...this.newVm(group, {
            cpus: meta.cpus,
            ramBytes: meta.ram_bytes,
            persistent: false,
            // The source's userdata already ran (its marker is on the disk the fork starts from).
            userdata: null,
            sshKeys: [...group.sshKeys, ...(request.sshKeys ?? [])],
            importUser: null,
            tags: request.tags ?? meta.tags,
            imageVersion: meta.image_version,
            lifetimeMs,
            // Slicer's fork policy: a list given replaces the host group's ([] clears it), an absent one is the group's.
            networkPolicy: overrideOfRecord(request.networkPolicy),
          }),
          // The commit's image, not the group's: a VM of another image (TTstack's API, a build) forks too.
          image: meta.image,
        },
        group.count,
      ),
    );
    return this.vms.lock.run(record.hostname, () =>
      this.vms.launchHolding(record, reservation, {
        from: {
          kind: "fork",
          template: meta.template,
          origin: commitId,
          disk: paths.disk,
          serialLog: paths.serialLog,
          ...(meta.memory ? { state: paths.state } : {}),
        },
        signal,
      }),
    );
  }

  /** The commit's disk (a qcow2 overlay whose chain ends in its image): what an image build flattens. */
  async diskPath(commitId: string): Promise<string> {
    await this.commits.get(commitId);
    return this.commits.paths(commitId).disk;
  }

  async list(filter: { cacheKey?: string } = {}): Promise<CommitInfo[]> {
    const all = await this.commits.list();
    const chosen = filter.cacheKey === undefined ? all : all.filter((m) => m.cache_key === filter.cacheKey);
    return Promise.all(chosen.map((m) => this.info(m)));
  }

  async get(commitId: string): Promise<CommitInfo> {
    return this.info(await this.commits.get(commitId));
  }

  /** Deletes a commit; 409 while VMs forked from it exist (their disks are backed by its disk). */
  async remove(commitId: string): Promise<void> {
    await this.commits.get(commitId);
    const forks = this.vms.store.forksOf(commitId);
    if (forks.length > 0) {
      throw new CorralError("conflict", `Cannot delete commit ${commitId}: VMs forked from it still use its disk (${forks.join(", ")})`);
    }
    await this.commits.remove(commitId);
    this.vms.log.info({ commit: commitId }, "Commit deleted");
    void this.templates?.collectGarbage();
  }

  private async info(meta: CommitMeta): Promise<CommitInfo> {
    const { template: _template, net: _net, ...fields } = meta;
    return { ...fields, size_bytes: await this.commits.size(meta.commit_id), forks: this.vms.store.forksOf(meta.commit_id) };
  }
}

/**
 * A saved memory state loads only on the NIC back end it was saved on (QEMU refuses a slirp section under a
 * TAP, and a TAP state without vnet_hdr): a fork into a group that changed kind since is refused up front,
 * naming both. A disk-only commit boots, on any back end.
 */
export function assertSameBackend(commitId: string, meta: Pick<CommitMeta, "memory" | "net">, group: HostGroupConfig): void {
  if (!meta.memory) return;
  const saved = meta.net ?? "user";
  const wanted = backendKind(group);
  if (saved === wanted) return;
  const name = (kind: "user" | "tap"): string => (kind === "tap" ? "a TAP back end" : "user-mode networking");
  throw new CorralError(
    "conflict",
    `Cannot fork commit ${JSON.stringify(commitId)} into host group ${JSON.stringify(group.name)}: it was saved on ${name(saved)} and the group uses ${wanted === "tap" ? `${group.network.mode} networking (a TAP back end)` : name(wanted)}`,
  );
}
