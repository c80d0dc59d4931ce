// The live VMs: one runtime (machine, agent client) per running VM, one operation per VM at a time,
// agent bring-up after every boot, reboot or restore, and what happens when a machine ends. The manager
// (records, agent calls) and the power operations (pause, shutdown, suspend, ...) build on this.
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { AccelVerdict, Engine, MachineEvent, MachineExit } from "../../engine/index.ts";
import type { ImageStore } from "../../image/index.ts";
import type { AttachmentProvider } from "../../net/attachment.ts";
import type { GuestIdentity } from "../../protocol/agent.ts";
import { CorralError } from "../../protocol/errors.ts";
import { assertHostname } from "../../protocol/names.ts";
import { raceAbort, runningTimeout } from "../../util/abort.ts";
import { crashPoint } from "../../util/crash-points.ts";
import { KeyedLock } from "../../util/keyed-lock.ts";
import type { Logger } from "../../util/log.ts";
import { isStorageFull, storageFullError } from "../../util/storage-full.ts";
import { tailLines } from "../../util/tail.ts";
import type { AgentClient } from "../agent/agent-client.ts";
import type { Admission, AdmissionRequest, Reservation } from "../admission.ts";
import type { DaemonConfig } from "../config.ts";
import type { DaemonMetrics } from "../metrics.ts";
import { describeCrash, failExitedVm, settleExitedVm } from "./exit-policy.ts";
import { launchVm, type LaunchOptions } from "./launch-vm.ts";
import { recoverVms } from "./recovery.ts";
import { removeVmFolder, vmPaths } from "./vm-paths.ts";
import { VmRuntime } from "./vm-runtime.ts";
import { isLive } from "../../protocol/vm-lifecycle.ts";
import type { VmRecord, VmStore } from "./vm-store.ts";
import type { CommitStore } from "../commits/commit-store.ts";
import type { TemplateManager } from "../templates/template-manager.ts";
import type { WarmPool } from "../templates/warm-pool.ts";

export interface VmManagerDeps {
  stateDir: string;
  /** The guest's TSC rate under TCG (see hostTscKhz). */
  tscKhz: number;
  config: DaemonConfig;
  store: VmStore;
  images: ImageStore;
  accel: AccelVerdict;
  /** Runs the machines (see src/engine/machine.ts). */
  engine: Engine;
  log: Logger;
  /** How long a VM may take to boot to a responding agent before it is given up on. */
  bootDeadlineMs?: number;
  metrics?: DaemonMetrics;
  /** Templates to clone new VMs from; without it every VM boots cold. */
  templates?: TemplateManager;
  /** Where commits are kept (commit and fork); without it there are none. */
  commits?: CommitStore;
  /** Clones kept restored and idle per group (see WarmPool). */
  pool?: WarmPool;
  /** The host address VMs' forwarded ports listen on (default 127.0.0.1). */
  forwardAddress?: string;
  /**
   * The group id every QEMU runs with: the wall between guests and the host's services keys on it (see
   * src/net/host-isolation.ts). Undefined when the wall is off.
   */
  guestGid: number | undefined;
  /** Decides whether the host can take one more VM (see admission.ts). */
  admission: Admission;
  /** Makes each VM's NIC (see src/net/attachment.ts). */
  network: AttachmentProvider;
}

/**
 * Runs each time a VM's agent becomes ready (boot, reboot, restore, daemon restart), after its identity was
 * applied and before the VM counts as ready. Features use it to deliver what every guest must have (secrets).
 */
export type AgentReadyHook = (hostname: string, agent: AgentClient, signal: AbortSignal, context: AgentReadyContext) => Promise<void>;

export interface AgentReadyContext {
  /**
   * The VM was just created (booted cold or cloned from a template) and this is its first bring-up: the guest
   * holds nothing the daemon delivered before, so a step may skip asking it what it has.
   */
  fresh: boolean;
}

/** Host random bytes handed to each guest when its agent connects. */
const ENTROPY_BYTES = 64;

/** How long exec and health wait for an agent that is still coming up. */
const AGENT_WAIT_MS = 60_000;

export class VmSupervisor {
  readonly lock = new KeyedLock();
  private readonly runtimes = new Map<string, VmRuntime>();
  /** Aborted when the daemon stops: bring-ups give up, creates are refused. */
  readonly stopping = new AbortController();
  /** Completes when the exit of each adopted runtime has been handled. */
  private readonly exitHandling = new WeakMap<VmRuntime, Promise<void>>();
  private readonly agentReadyHooks: AgentReadyHook[] = [];
  readonly log: Logger;

  constructor(readonly deps: VmManagerDeps) {
    this.log = deps.log;
  }

  get store(): VmStore {
    return this.deps.store;
  }

  /** The record of a VM; `vm_not_found` when there is none. */
  record(hostname: string): VmRecord {
    assertHostname(hostname);
    const record = this.deps.store.get(hostname);
    if (!record) throw new CorralError("vm_not_found", `VM ${JSON.stringify(hostname)} does not exist`);
    return record;
  }

  runtime(hostname: string): VmRuntime | undefined {
    return this.runtimes.get(hostname);
  }

  onAgentReady(hook: AgentReadyHook): void {
    this.agentReadyHooks.push(hook);
  }

  /**
   * Runs the agent-ready steps again for a VM whose agent is ready (after a resume: what changed while it
   * was paused, such as secrets, is delivered now). Failures are logged.
   */
  async rerunReadySteps(hostname: string): Promise<void> {
    const runtime = this.runtimes.get(hostname);
    if (!runtime?.readiness.isReady) return;
    const signal = AbortSignal.any([this.stopping.signal, AbortSignal.timeout(60_000)]);
    for (const hook of this.agentReadyHooks) {
      await hook(hostname, runtime.agent, signal, { fresh: false }).catch((err: unknown) => this.log.error({ vm: hostname, err }, "An agent-ready step failed"));
    }
  }

  /** The agents of every VM that is ready now (paused or frozen VMs excluded: they cannot answer). */
  readyAgents(): { hostname: string; agent: AgentClient }[] {
    const ready: { hostname: string; agent: AgentClient }[] = [];
    for (const runtime of this.runtimes.values()) {
      if (runtime.readiness.isReady && !runtime.condition.diskStop && this.deps.store.get(runtime.hostname)?.state === "running")
        ready.push({ hostname: runtime.hostname, agent: runtime.agent });
    }
    return ready;
  }

  // ---- starting ----

  /**
   * Starts a machine for a record (the caller holds the VM's lock) and takes charge of it. A brand-new VM that
   * fails to start leaves nothing behind; a relaunch that fails keeps its record, with the reason in
   * `last_error`.
   */
  async launch(record: VmRecord, options: LaunchOptions = {}): Promise<VmRecord> {
    if (record.state === "creating") crashPoint("create.inserted");
    if (record.state === "creating" && options.signal?.aborted) {
      // The client left before the VM was started: nothing of it may start now.
      await this.rollBack(record, options.signal.reason);
      throw options.signal.reason;
    }
    if (record.state === "creating" && options.restoreFrom === undefined && options.from === undefined) {
      const cloned = await this.tryClone(record, options.signal);
      if (cloned) return this.afterLaunch(record, cloned);
    }
    try {
      const launched = await launchVm(this.deps, record, options);
      this.deps.metrics?.vmLaunched(record.hostgroup, "started");
      this.adopt(launched.runtime, launched.record);
      return this.afterLaunch(record, launched.record);
    } catch (err) {
      this.deps.metrics?.vmLaunched(record.hostgroup, "failed");
      if (record.state !== "creating") {
        this.deps.store.recordError(record.hostname, record.incarnation, (err as Error).message);
        this.log.error({ vm: record.hostname, err }, "VM could not be relaunched");
      }
      if (err instanceof CorralError) throw err;
      const full = storageFullError(err, `the disk and files of VM ${JSON.stringify(record.hostname)}`, this.deps.stateDir);
      if (full) throw full;
      this.log.error({ vm: record.hostname, err }, "VM could not start");
      throw new CorralError("engine_failed", `Cannot start VM ${JSON.stringify(record.hostname)}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Creates a new VM as a clone of its group's template; undefined when there is none or the clone failed. */
  private async tryClone(record: VmRecord, signal: AbortSignal | undefined): Promise<VmRecord | undefined> {
    const pooled = await this.takeFromPool(record);
    if (pooled) return pooled;
    const template = this.deps.templates?.acquire(record);
    if (!template) return undefined;
    try {
      const launched = await launchVm(this.deps, record, {
        from: { kind: "template", template: template.id, disk: template.disk, serialLog: template.serialLog, state: template.state },
        signal,
      });
      this.deps.metrics?.vmLaunched(record.hostgroup, "cloned");
      this.adopt(launched.runtime, launched.record);
      return launched.record;
    } catch (err) {
      if (signal?.aborted) {
        // Given up because the client left, not because the template is broken: no cold boot either.
        await this.rollBack(record, signal.reason);
        throw signal.reason;
      }
      if (this.stopping.signal.aborted) throw err;
      // A full disk is the host's problem, not the template's, and so is a group whose network cannot be set
      // up (the cold boot that follows meets either too, and its undo removes the record).
      const networkDown = err instanceof CorralError && err.code === "network_unavailable";
      if (!isStorageFull(err) && !networkDown) this.deps.templates?.reportBroken(template.id, err);
      return undefined;
    } finally {
      template.release();
    }
  }

  /** Gives a warm-pool clone the record's name and takes charge of it; undefined when the pool has none. */
  private async takeFromPool(record: VmRecord): Promise<VmRecord | undefined> {
    const paths = vmPaths(this.deps.stateDir, record.hostname);
    const pooled = await this.deps.pool?.take(record, paths.dir);
    if (!pooled) return undefined;
    crashPoint("create.pool-taken");
    try {
      pooled.agent.relocate(paths.agentSocket);
      pooled.machine.moveFiles(paths.machine);
      const booting = this.deps.store.transition(record, "booting", {
        pid: pooled.machine.pid,
        pidStartTime: pooled.machine.startTime,
        incarnation: this.deps.store.nextIncarnation(),
        lastError: null,
        template: pooled.templateId,
      });
      const runtime = new VmRuntime(booting.hostname, booting.incarnation, pooled.machine, pooled.agent, pooled.attachment, { created: true });
      this.deps.metrics?.vmLaunched(record.hostgroup, "cloned");
      this.log.info({ vm: record.hostname, pid: pooled.machine.pid, template: pooled.templateId }, "VM taken from the warm pool");
      this.adopt(runtime, booting);
      return booting;
    } catch (err) {
      await pooled.machine.kill();
      await removeVmFolder(this.deps.stateDir, record.hostname);
      this.log.warn({ vm: record.hostname, err }, "A warm-pool clone could not be taken: cloning anew");
      return undefined;
    } finally {
      pooled.release();
    }
  }

  /** A new VM has a machine and a record in "booting" now: a crash here must still leave nothing. */
  private afterLaunch(before: VmRecord, after: VmRecord): VmRecord {
    if (before.state === "creating") crashPoint("create.booting");
    return after;
  }

  /** Ends the VM's machine and removes its folder and record; the caller holds the VM's lock. */
  async remove(record: VmRecord): Promise<void> {
    await this.killRuntime(record.hostname);
    await removeVmFolder(this.deps.stateDir, record.hostname);
    this.deps.store.delete(record.hostname, record.incarnation);
    if (record.template) void this.deps.templates?.collectGarbage();
  }

  /** Removes a VM whose create was undone before it was answered (see VmManager.rollBackCreate). */
  async rollBack(record: VmRecord, reason: unknown): Promise<void> {
    await this.remove(record);
    this.deps.metrics?.createRolledBack(record.hostgroup);
    this.log.warn({ vm: record.hostname, reason: reason instanceof Error ? reason.message : String(reason) }, "Create rolled back before it was answered: the VM was removed");
  }

  /** Takes charge of a live VM: watches for its exit and brings its agent up. */
  adopt(runtime: VmRuntime, record: VmRecord): void {
    this.runtimes.set(runtime.hostname, runtime);
    this.exitHandling.set(
      runtime,
      runtime.machine.exited.then((info) => this.onExit(runtime, info)).catch((err: unknown) => this.log.error({ vm: runtime.hostname, err }, "Cannot clean up after VM exit")),
    );
    runtime.machine.onEvent((event) => this.onMachineEvent(runtime, event));
    this.bringUp(runtime, record);
  }

  /**
   * The engine stops the vCPUs when the host cannot store a disk write (QEMU's default policy, werror=enospc),
   * until it is resumed with room to spare (see VmPower.resume). That is kept in the runtime's condition, not
   * in the record: the record's database sits on the very filesystem that is full, and the engine itself
   * remembers the stop for the next daemon (recovery reads it back). Views show such a VM as paused (see
   * shownState).
   */
  private onMachineEvent(runtime: VmRuntime, event: MachineEvent): void {
    if (event.type === "resumed") return runtime.condition.resumed();
    if (event.type !== "disk-error" || event.action !== "stop") return;
    const first = runtime.condition.diskStop === undefined;
    const stop = runtime.condition.stoppedByDisk(event);
    if (first)
      this.log.warn(
        { vm: runtime.hostname, reason: stop.reason, operation: event.operation },
        `VM frozen by QEMU: ${stop.kind === "disk_full" ? "the host's disk is full" : "a disk error"}`,
      );
  }

  /** (Re)connects to the agent and hands it the VM's identity; `runtime.readiness` follows (see readiness.ts). */
  bringUp(runtime: VmRuntime, record: VmRecord): void {
    runtime.condition.agentRestarting();
    void runtime.readiness.begin((attempt) => this.connectAgent(runtime, record, attempt));
  }

  private async connectAgent(runtime: VmRuntime, record: VmRecord, attempt: number): Promise<void> {
    // Milliseconds from here to each step, in the "ready" log line: where a slow bring-up spends its time.
    const started = performance.now();
    const timings: Record<string, number> = {};
    // The deadline counts only while the vCPUs run: a VM re-attached while paused or frozen by its disk
    // answers once it is resumed, and must not be killed for its silence meanwhile.
    const deadline = runningTimeout(this.deps.bootDeadlineMs ?? 10 * 60_000, () => !runtime.condition.diskStop && this.deps.store.get(record.hostname)?.state !== "paused");
    const signal = AbortSignal.any([this.stopping.signal, deadline.signal]);
    try {
      await runtime.agent.waitForConnection(signal, () => runtime.alive);
      timings.connected = Math.round(performance.now() - started);
      await runtime.agent.applyIdentity(
        {
          hostname: record.hostname,
          userdata: record.userdata ?? undefined,
          ssh_keys: record.sshKeys,
          user: record.importUser ?? undefined,
          time_ms: Date.now(),
          machine_id: record.machineId || undefined,
          // Fresh on every connect: a clone (or a restored suspend) must not run on a generator state that
          // another VM shares.
          entropy: randomBytes(ENTROPY_BYTES).toString("base64"),
          mac: record.mac,
          ...guestNetworkIdentity(runtime),
        },
        signal,
      );
      // The guest has its own MAC and address now: a NIC resumed with its link down may carry traffic.
      if (runtime.machine.link === "down") {
        await runtime.machine.setLink(true);
      } else if (runtime.machine.link === "unknown" && runtime.machine.capabilities.linkControl) {
        // Re-attached after a daemon restart: the last daemon may have died between a restore and this step,
        // leaving the link down. Raising a link that is up is a no-op on every back end.
        await runtime.machine.setLink(true).catch((err: unknown) => this.log.warn({ vm: record.hostname, err }, "Cannot raise the VM's network link"));
      }
      timings.identity = Math.round(performance.now() - started);
      const fresh = runtime.readiness.fresh;
      for (const hook of this.agentReadyHooks) {
        await hook(record.hostname, runtime.agent, signal, { fresh }).catch((err: unknown) => this.log.error({ vm: record.hostname, err }, "An agent-ready step failed"));
      }
      timings.hooks = Math.round(performance.now() - started);
    } catch (err) {
      if (runtime.alive && !this.stopping.signal.aborted) {
        const tail = (await tailLines(vmPaths(this.deps.stateDir, record.hostname).serialLog, 5)).trim();
        this.log.error({ vm: record.hostname, err, serial: tail }, "VM agent never answered: stopping the VM");
        void runtime.machine.kill();
      }
      throw err;
    } finally {
      deadline.dispose();
    }
    runtime.readiness.reached(attempt, "ready");
    await this.lock.run(record.hostname, async () => {
      const current = this.deps.store.get(record.hostname);
      if (current?.incarnation === runtime.incarnation && current.state === "booting") this.deps.store.transition(current, "running");
    });
    this.log.info({ vm: record.hostname, agent: runtime.agent.agentVersion, ms: timings }, "VM agent ready");
  }

  /**
   * The runtime of a VM whose agent is ready, or becomes so within a bounded wait; 409 when the VM is paused
   * or not running.
   */
  async readyRuntime(hostname: string, signal: AbortSignal): Promise<VmRuntime> {
    const record = this.record(hostname);
    const runtime = this.runtimes.get(hostname);
    if (!runtime || !isLive(record.state)) {
      throw new CorralError("vm_not_running", `VM ${JSON.stringify(hostname)} is not running (it is ${record.state})`);
    }
    assertNotFrozen(runtime, this.deps.stateDir);
    if (record.state === "paused") throw new CorralError("vm_paused", `VM ${JSON.stringify(hostname)} is paused: resume it first`);
    if (!runtime.readiness.isReady) {
      const wait = AbortSignal.any([signal, AbortSignal.timeout(AGENT_WAIT_MS)]);
      await raceAbort(runtime.readiness.whenSettled, wait, () => new CorralError("timeout", "Timed out waiting for the VM")).catch((err: unknown) => {
        throw new CorralError("agent_unavailable", `The agent of VM ${JSON.stringify(hostname)} is not answering`, { cause: err });
      });
    }
    return runtime;
  }

  // ---- stopping ----

  /** Forgets and kills a VM's machine at once (delete, failed create); resolves when the process is gone. */
  async killRuntime(hostname: string): Promise<void> {
    const runtime = this.runtimes.get(hostname);
    if (!runtime) return;
    this.runtimes.delete(hostname);
    await Promise.race([runtime.machine.kill(), sleep(10_000)]);
    runtime.dispose();
  }

  /** Forgets a runtime without applying the exit policy (the VM was suspended: its record stays). */
  release(hostname: string): void {
    this.runtimes.delete(hostname);
  }

  /**
   * Resolves once the machine of `runtime` is gone and its exit was handled. Handling takes the VM's lock:
   * never call this while holding it.
   */
  async awaitExit(runtime: VmRuntime): Promise<void> {
    await runtime.machine.exited;
    await this.exitHandling.get(runtime);
  }

  private async onExit(exited: VmRuntime, info: MachineExit): Promise<void> {
    const { hostname, incarnation } = exited;
    await this.lock.run(hostname, async () => {
      const runtime = this.runtimes.get(hostname);
      if (runtime?.incarnation === incarnation) {
        this.runtimes.delete(hostname);
        runtime.dispose();
      }
      const record = this.deps.store.get(hostname);
      if (!record || record.incarnation !== incarnation || !isLive(record.state)) return;
      const how = info.code !== null ? `exit code ${info.code}` : info.signal ? `signal ${info.signal}` : "no status";
      // A machine that died of a signal nobody here sent crashed (SIGBUS: its RAM file could not be backed)
      // or was killed (the OOM killer): the VM stays, failed, with the reason, instead of vanishing.
      const crash = describeCrash(info);
      if (crash) {
        failExitedVm(this.deps.store, record, crash);
        this.log.error({ vm: hostname, how }, crash);
        return;
      }
      const outcome = await settleExitedVm(this.deps.stateDir, this.deps.store, record);
      this.log.info({ vm: hostname, how, outcome }, outcome === "removed" ? "Sandbox exited: removed with its disk" : "VM exited");
      if (outcome === "removed" && record.template) void this.deps.templates?.collectGarbage();
    });
  }

  // ---- daemon life ----

  /** Re-attaches to the VMs that survived the previous daemon (after cleaning up its debris). */
  async recover(): Promise<void> {
    for (const { record, runtime } of await recoverVms(this.deps.engine, this.deps.stateDir, this.deps.store, this.log)) {
      this.adopt(runtime, record);
      // Frozen by its disk while no daemon watched: QEMU told recovery so.
      if (runtime.condition.diskStop) this.log.warn({ vm: record.hostname, reason: runtime.condition.diskStop.reason }, "VM found frozen by QEMU: its disk writes failed");
    }
  }

  // ---- admission ----

  /** Admits one more VM or throws the refusal (429 or 507, see Admission.admit). */
  admit(request: AdmissionRequest): Reservation {
    return this.deps.admission.admit(request);
  }

  /**
   * Writes the record of a VM admitted with `reservation` (at once: no await between the admission and the
   * record, so concurrent creates see each other). When that fails the reservation ends, and a full disk is a
   * 507 naming what was written.
   */
  recordAdmitted(reservation: Reservation, what: string, insert: () => VmRecord): VmRecord {
    try {
      return insert();
    } catch (err) {
      reservation.release();
      throw storageFullError(err, what, this.deps.stateDir) ?? err;
    }
  }

  /**
   * Launches a record admitted with `reservation` (the caller holds the VM's lock); the reservation is held
   * until the VM's agent is ready or its start failed.
   */
  async launchHolding(record: VmRecord, reservation: Reservation, options?: LaunchOptions): Promise<VmRecord> {
    try {
      const launched = await this.launch(record, options);
      this.holdUntilStarted(launched.hostname, reservation);
      return launched;
    } catch (err) {
      reservation.release();
      throw err;
    }
  }

  /** Keeps `reservation` until the VM's agent is ready or its start failed, then releases it. */
  holdUntilStarted(hostname: string, reservation: Reservation): void {
    const runtime = this.runtimes.get(hostname);
    if (!runtime) return reservation.release();
    void runtime.readiness.whenSettled.then(
      () => reservation.release(),
      () => reservation.release(),
    );
  }

  /** Every runtime with its record, for the liveness checks and the views. */
  live(): { runtime: VmRuntime; record: VmRecord }[] {
    const found: { runtime: VmRuntime; record: VmRecord }[] = [];
    for (const runtime of this.runtimes.values()) {
      const record = this.deps.store.get(runtime.hostname);
      if (record?.incarnation === runtime.incarnation) found.push({ runtime, record });
    }
    return found;
  }

  /**
   * Graceful stop: sandboxes are deleted with their disks; persistent VMs and services are powered off with
   * their disks kept (after the guest flushes them). A daemon killed with -9 does none of this: its VMs
   * keep running and are re-attached.
   */
  async stopAll(): Promise<void> {
    this.stopping.abort();
    const work = [...this.runtimes.values()].map(async (runtime) => {
      const record = this.deps.store.get(runtime.hostname);
      if (!record) return;
      if (record.kind === "sandbox" && !record.persistent) {
        await this.lock.run(runtime.hostname, async () => {
          await this.killRuntime(runtime.hostname);
          await removeVmFolder(this.deps.stateDir, runtime.hostname);
          this.deps.store.delete(runtime.hostname, record.incarnation);
        });
        return;
      }
      await runtime.syncDisks();
      await runtime.machine.shutdown({ graceMs: 5000 });
      await this.awaitExit(runtime);
    });
    await Promise.all(work);
  }
}

/** 507 at once for a VM whose vCPUs the engine stopped on a disk error: nothing in it can answer until it is resumed. */
export function assertNotFrozen(runtime: VmRuntime, stateDir: string): void {
  const stop = runtime.condition.diskStop;
  if (!stop) return;
  const name = JSON.stringify(runtime.hostname);
  const why =
    stop.kind === "disk_full"
      ? `the host cannot store what it writes to its disk (${stop.reason}): free space in ${stateDir}, then POST /vm/${runtime.hostname}/resume`
      : `a disk request failed (${stop.reason}): POST /vm/${runtime.hostname}/resume retries it`;
  throw new CorralError("insufficient_storage", `VM ${name} is frozen: QEMU stopped it because ${why}`);
}

/**
 * The address part of a VM's identity: TAP modes only, from the NIC this incarnation was given (user mode's
 * guest keeps what it booted with; a template's detached TAP has no address to give).
 */
export function guestNetworkIdentity(runtime: Pick<VmRuntime, "attachment">): { network?: NonNullable<GuestIdentity["network"]> } {
  const attachment = runtime.attachment;
  if (attachment?.netdev.kind !== "tap" || !attachment.guest.address) return {};
  const { address, prefixLength, gateway, dns } = attachment.guest;
  return { network: { address, prefix_length: prefixLength, gateway, dns: [...dns] } };
}
