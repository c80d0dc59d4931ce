// One template per host group (for its image and default size): built in the background at daemon start
// and whenever what it was made from changes, used by every create that matches, and replaced, never
// edited: a rebuilt template gets a new id and folder, the old one stays until the last VM cloned from it
// is gone. Until a template is ready, or when one turns out to be broken, creation boots cold: a template
// only ever makes creation faster, it never makes it fail.
import { createHash, randomBytes } from "node:crypto";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { AccelVerdict, Engine } from "../../engine/index.ts";
import type { ImageStore } from "../../image/index.ts";
import type { AttachmentProvider } from "../../net/attachment.ts";
import { backendKind } from "../../net/default-attachments.ts";
import { CorralError } from "../../protocol/errors.ts";
import type { Logger } from "../../util/log.ts";
import type { CommitStore } from "../commits/commit-store.ts";
import type { DaemonConfig, HostGroupConfig } from "../config.ts";
import type { VmRecord, VmStore } from "../vm/vm-store.ts";
import type { Admission } from "../admission.ts";
import { buildTemplate, type TemplateMeta } from "./build-template.ts";
import { backRamFile } from "./ram-file.ts";
import { TEMPLATE_ID_PATTERN, templatePaths, templatesDir, type TemplatePaths } from "./template-paths.ts";

/** Bump when the way templates are made or restored changes: older templates are then rebuilt. */
const TEMPLATE_FORMAT = "1";
/** The start of a group's `error` while its template build is skipped for want of memory or space. */
const SKIPPED = "template not built";
/** After this many failed builds or broken templates in a row, a group waits for `rebuild`. */
const MAX_FAILURES = 3;

export type TemplateState = "disabled" | "none" | "building" | "ready" | "failed";

export interface TemplateInfo {
  hostgroup: string;
  state: TemplateState;
  /** The template in use, when one is ready. */
  template_id: string | null;
  image: string;
  image_version: string | null;
  cpus: number;
  ram_bytes: number;
  built_at: string | null;
  build_ms: number | null;
  /** VMs cloned from this group's templates that still exist (old templates included). */
  clones: number;
  warm_pool: number;
  pooled: number;
  error: string | null;
}

/** A template handed out for one clone; `release` it when the launch is over (see acquire). */
export type TemplateLease = TemplatePaths & { id: string; imageVersion: string; release(): void };

interface GroupEntry {
  ready: TemplateMeta | undefined;
  building: Promise<void> | undefined;
  failures: number;
  error: string | undefined;
}

export interface TemplateManagerDeps {
  stateDir: string;
  config: DaemonConfig;
  images: ImageStore;
  store: VmStore;
  accel: AccelVerdict;
  tscKhz: number;
  /** Runs the templates' machines (see src/engine/machine.ts). */
  engine: Engine;
  log: Logger;
  /**
   * The group id every QEMU runs with: the wall between guests and the host's services keys on it (see
   * src/net/host-isolation.ts). Undefined when the wall is off.
   */
  guestGid: number | undefined;
  /** Commits keep the template their VM came from (their forks map its RAM file). */
  commits?: CommitStore;
  /** A build boots a VM: it must fit beside the user's VMs, never instead of them. */
  admission: Admission;
  /** Templates of TAP-mode groups are built on a detached TAP (see build-template.ts). */
  network: AttachmentProvider;
}

export class TemplateManager {
  private readonly groups = new Map<string, GroupEntry>();
  /** Templates being cloned right now, by id: never collected while in use. */
  private readonly leases = new Map<string, number>();
  private readonly stopping = new AbortController();
  /** Builds run one at a time: each is a cold boot, and they would only slow each other down. */
  private queue: Promise<void> = Promise.resolve();
  private readonly qemuIdentity: string;
  private readonly readyListeners: ((hostgroup: string) => void)[] = [];
  /** How many clones each group's warm pool holds (set by the pool). */
  pooledCounts: () => Record<string, number> = () => ({});

  constructor(private readonly deps: TemplateManagerDeps) {
    for (const group of deps.config.hostGroups) this.groups.set(group.name, { ready: undefined, building: undefined, failures: 0, error: undefined });
    this.qemuIdentity = deps.engine.identity;
  }

  /** Adopts the templates already on disk, drops debris, and starts the builds that are missing. */
  async start(): Promise<void> {
    const found = await this.scan();
    for (const group of this.deps.config.hostGroups) {
      if (!group.template) continue;
      const key = await this.currentKey(group).catch(() => undefined);
      const entry = this.entry(group.name);
      entry.ready = found.filter((m) => m.key === key && m.hostgroup === group.name).sort((a, b) => b.built_at.localeCompare(a.built_at))[0];
      if (entry.ready && !(await this.backed(entry.ready, entry))) entry.ready = undefined;
      if (!entry.ready) this.scheduleBuild(group);
      else for (const listener of this.readyListeners) listener(group.name);
    }
    await this.collectGarbage();
  }

  /** Abandons a build in progress (its QEMU is killed, its folder removed) and waits for it. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.queue.catch(() => undefined);
  }

  /**
   * The template to clone `record` from, when its group has a ready one of the record's image version and
   * size; otherwise undefined (boot cold), and a build is started if the group's template is missing or out
   * of date. The lease keeps the template's files while the clone is being made.
   */
  acquire(record: VmRecord): TemplateLease | undefined {
    const ready = this.readyFor(record);
    return ready ? this.lease(ready) : undefined;
  }

  /** The id of the template a clone for `record` must come from, when there is one (see acquire). */
  templateFor(record: VmRecord): string | undefined {
    return this.readyFor(record)?.id;
  }

  /** A lease on the group's current template (for a warm-pool clone); undefined while none is ready. */
  acquireCurrent(groupName: string): TemplateLease | undefined {
    const ready = this.groups.get(groupName)?.ready;
    return ready && !this.stopping.signal.aborted ? this.lease(ready) : undefined;
  }

  /** Calls `listener` with the group's name whenever one of its templates becomes ready. */
  onReady(listener: (hostgroup: string) => void): void {
    this.readyListeners.push(listener);
  }

  private readyFor(record: VmRecord): TemplateMeta | undefined {
    const group = this.deps.config.hostGroups.find((g) => g.name === record.hostgroup);
    if (!group?.template || this.stopping.signal.aborted) return undefined;
    if (record.cpus !== group.vcpu || record.ramBytes !== group.ramBytes || record.image !== group.image) return undefined;
    const entry = this.entry(group.name);
    const wanted = this.keyFor(group, record.imageVersion);
    if (entry.ready?.key !== wanted) {
      if (!entry.building && entry.failures < MAX_FAILURES) this.scheduleBuild(group);
      return undefined;
    }
    return entry.ready;
  }

  private lease(meta: TemplateMeta): TemplateLease {
    const id = meta.id;
    this.leases.set(id, (this.leases.get(id) ?? 0) + 1);
    let released = false;
    return {
      ...templatePaths(this.deps.stateDir, id),
      id,
      imageVersion: meta.image_version,
      release: () => {
        if (released) return;
        released = true;
        const left = (this.leases.get(id) ?? 1) - 1;
        if (left > 0) this.leases.set(id, left);
        else this.leases.delete(id);
      },
    };
  }

  /** A clone of `id` failed: stop using that template, say so, and build a new one. */
  reportBroken(id: string, err: unknown): void {
    for (const [name, entry] of this.groups) {
      if (entry.ready?.id !== id) continue;
      entry.ready = undefined;
      entry.failures++;
      entry.error = `template ${id} is broken: ${(err as Error).message ?? String(err)}`;
      this.deps.log.warn({ hostgroup: name, template: id, err }, "Template is missing or broken: creating VMs by cold boot until it is rebuilt");
      const group = this.deps.config.hostGroups.find((g) => g.name === name);
      if (group && entry.failures < MAX_FAILURES) this.scheduleBuild(group);
    }
  }

  /** Builds a fresh template for the group now (a new id; clones of the old one keep running). */
  rebuild(groupName: string): TemplateInfo {
    const group = this.deps.config.hostGroups.find((g) => g.name === groupName);
    if (!group) throw new CorralError("hostgroup_not_found", `Host group ${JSON.stringify(groupName)} does not exist`);
    if (!group.template) throw new CorralError("conflict", `Host group ${JSON.stringify(groupName)} does not use templates (template: false in its configuration)`);
    const entry = this.entry(group.name);
    entry.failures = 0;
    if (!entry.building) this.scheduleBuild(group, { force: true });
    return this.info(group);
  }

  /** Resolves when the group's template build in progress (if any) has finished. */
  async settled(groupName: string): Promise<void> {
    await this.groups.get(groupName)?.building;
  }

  list(): TemplateInfo[] {
    return this.deps.config.hostGroups.map((group) => this.info(group));
  }

  /** Deletes the template folders that no group uses, no VM was cloned from, and no clone is being made of. */
  async collectGarbage(): Promise<void> {
    const keep = new Set<string>([...this.deps.store.templatesInUse(), ...this.leases.keys(), ...((await this.deps.commits?.templatesInUse()) ?? [])]);
    for (const entry of this.groups.values()) if (entry.ready) keep.add(entry.ready.id);
    let names: string[];
    try {
      names = await readdir(templatesDir(this.deps.stateDir));
    } catch {
      return;
    }
    for (const name of names) {
      if (!TEMPLATE_ID_PATTERN.test(name) || keep.has(name)) continue;
      await rm(join(templatesDir(this.deps.stateDir), name), { recursive: true, force: true });
      this.deps.log.info({ template: name }, "Template removed: nothing uses it any more");
    }
  }

  // ---- internals ----

  private entry(name: string): GroupEntry {
    let entry = this.groups.get(name);
    if (!entry) {
      entry = { ready: undefined, building: undefined, failures: 0, error: undefined };
      this.groups.set(name, entry);
    }
    return entry;
  }

  private info(group: HostGroupConfig): TemplateInfo {
    const entry = this.entry(group.name);
    const ready = entry.ready;
    const records = this.deps.store.listGroup(group.name);
    const state: TemplateState = !group.template ? "disabled" : entry.building ? "building" : ready ? "ready" : entry.error ? "failed" : "none";
    return {
      hostgroup: group.name,
      state,
      template_id: ready?.id ?? null,
      image: group.image,
      image_version: ready?.image_version ?? null,
      cpus: group.vcpu,
      ram_bytes: group.ramBytes,
      built_at: ready?.built_at ?? null,
      build_ms: ready?.build_ms ?? null,
      clones: records.filter((r) => r.template !== null).length,
      warm_pool: group.warmPool,
      pooled: this.pooledCounts()[group.name] ?? 0,
      error: entry.error ?? null,
    };
  }

  /** The key a template must have to serve `group` with image version `imageVersion`. */
  private keyFor(group: HostGroupConfig, imageVersion: string): string {
    return templateKey(group, imageVersion, { accel: this.deps.accel, tscKhz: this.deps.tscKhz, qemu: this.qemuIdentity });
  }

  private async currentKey(group: HostGroupConfig): Promise<string> {
    return this.keyFor(group, (await this.deps.images.resolve(group.image)).version);
  }

  private scheduleBuild(group: HostGroupConfig, options: { force?: boolean } = {}): void {
    const entry = this.entry(group.name);
    const build = this.queue.then(() => this.build(group, options.force ?? false));
    const tracked: Promise<void> = build.finally(() => {
      if (entry.building === tracked) entry.building = undefined;
    });
    entry.building = tracked;
    this.queue = build.catch(() => undefined);
  }

  private async build(group: HostGroupConfig, force: boolean): Promise<void> {
    if (this.stopping.signal.aborted) return;
    const entry = this.entry(group.name);
    try {
      const image = await this.deps.images.resolve(group.image);
      const key = this.keyFor(group, image.version);
      if (!force && entry.ready?.key === key) return;
      const id = `t-${key.slice(0, 8)}-${randomBytes(3).toString("hex")}`;
      // The template VM's RAM file takes up to its RAM on the state directory's filesystem.
      const admitted = this.deps.admission.tryAdmit({
        what: `the template of host group ${JSON.stringify(group.name)}`,
        group,
        ramBytes: group.ramBytes,
        priority: "background",
        joinsGroup: false,
        extraDiskBytes: group.ramBytes,
      });
      if ("refused" in admitted) {
        // Not a failure of the template: tried again at the next create, which meanwhile boots cold.
        const already = entry.error?.startsWith(SKIPPED);
        entry.error = `${SKIPPED}: ${admitted.refused.message}`;
        if (!already) this.deps.log.warn({ hostgroup: group.name, reason: admitted.refused.message }, "Template build skipped: creating VMs by cold boot");
        return;
      }
      this.deps.log.info({ hostgroup: group.name, template: id, image: `${image.name}@${image.version}` }, "Building template");
      const meta = await buildTemplate(
        this.deps,
        { id, key, hostgroup: group.name, image, cpus: group.vcpu, ramBytes: group.ramBytes },
        AbortSignal.any([this.stopping.signal, AbortSignal.timeout(10 * 60_000)]),
      ).finally(() => admitted.reservation.release());
      entry.ready = meta;
      entry.failures = 0;
      entry.error = undefined;
      this.deps.log.info({ hostgroup: group.name, template: id, seconds: (meta.build_ms / 1000).toFixed(1) }, "Template ready");
      await this.collectGarbage();
      for (const listener of this.readyListeners) listener(group.name);
    } catch (err) {
      if (this.stopping.signal.aborted) return;
      entry.failures++;
      entry.error = `template build failed: ${(err as Error).message}`;
      this.deps.log.error({ hostgroup: group.name, err }, "Template build failed: creating VMs by cold boot");
    }
  }

  /**
   * Whether a template found on disk can back its clones' memory (a template made before its RAM file was
   * allocated in full, on tmpfs, can run its clones into SIGBUS); one that cannot is not used.
   */
  private async backed(meta: TemplateMeta, entry: GroupEntry): Promise<boolean> {
    try {
      await backRamFile(templatePaths(this.deps.stateDir, meta.id).ram, Math.ceil(meta.ram_bytes / (1024 * 1024)) * 1024 * 1024);
      return true;
    } catch (err) {
      entry.error = `template ${meta.id} is not used: its RAM file cannot be backed in full (${(err as Error).message.split("\n").pop()})`;
      this.deps.log.warn({ hostgroup: meta.hostgroup, template: meta.id, err }, "Template is not used: its RAM file cannot be backed; creating VMs by cold boot");
      return false;
    }
  }

  /** The complete templates on disk; folders of interrupted builds are removed. */
  private async scan(): Promise<TemplateMeta[]> {
    const dir = templatesDir(this.deps.stateDir);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return [];
    }
    const found: TemplateMeta[] = [];
    for (const name of names) {
      if (name.startsWith(".b-")) {
        // A build the previous daemon was doing when it died: its QEMU may still be running.
        const buildDir = join(dir, name);
        for (const pid of this.deps.engine.processesUnder(buildDir)) this.deps.engine.killOrphan(pid);
        await rm(buildDir, { recursive: true, force: true });
        continue;
      }
      if (!TEMPLATE_ID_PATTERN.test(name)) continue;
      try {
        const meta = JSON.parse(await readFile(templatePaths(this.deps.stateDir, name).meta, "utf8")) as TemplateMeta;
        if (meta.id === name) found.push(meta);
      } catch {
        // no metadata: not a template we can use (garbage collection removes it unless a VM needs it)
      }
    }
    return found;
  }
}

/**
 * What a template is made from, hashed: a template serves a group only while all of it is unchanged. Saved
 * states only load on the NIC back end they were saved on (a TAP or slirp), so a group that changes kind
 * needs a new template; user mode adds nothing, so templates made before TAP modes stay valid.
 */
export function templateKey(
  group: Pick<HostGroupConfig, "image" | "vcpu" | "ramBytes" | "network">,
  imageVersion: string,
  engine: { accel: Pick<AccelVerdict, "accel" | "kvmCpu">; tscKhz: number; qemu: string },
): string {
  const { accel, kvmCpu } = engine.accel;
  const net = backendKind(group);
  const inputs = {
    format: TEMPLATE_FORMAT,
    image: group.image,
    imageVersion,
    cpus: group.vcpu,
    ramBytes: group.ramBytes,
    accel,
    kvmCpu,
    tscKhz: engine.tscKhz,
    qemu: engine.qemu,
    ...(net === "user" ? {} : { net }),
  };
  return createHash("sha256").update(JSON.stringify(inputs)).digest("hex");
}
