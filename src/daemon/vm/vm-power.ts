// A VM's power: pause and resume (vCPUs frozen), shutdown (flush, then the machine ends), reboot (a reset
// of the same machine), relaunch (boot a stopped VM on its own disk), suspend and restore (memory and
// device state saved to a file, the machine gone, then back where it was).
import { rm } from "node:fs/promises";
import { CorralError } from "../../protocol/errors.ts";
import { vmPaths } from "./vm-paths.ts";
import { isLive } from "../../protocol/vm-lifecycle.ts";
import type { Reservation } from "../admission.ts";
import type { HostGroupConfig } from "../config.ts";
import type { VmRecord } from "./vm-store.ts";
import { assertNotFrozen, type VmSupervisor } from "./vm-supervisor.ts";
import { storageFullError } from "../../util/storage-full.ts";

/** How long a resumed VM that was frozen by its disk is watched for stopping again before it counts as running. */
const RETRY_SETTLE_MS = 1500;

export class VmPower {
  constructor(
    private readonly vms: VmSupervisor,
    private readonly group: (name: string) => HostGroupConfig,
  ) {}

  /** Admission for a VM that starts again (relaunch, restore): it needs its memory and its group's room. */
  private admit(record: VmRecord): Reservation {
    return this.vms.admit({
      what: `VM ${JSON.stringify(record.hostname)} of host group ${JSON.stringify(record.hostgroup)}`,
      group: this.group(record.hostgroup),
      ramBytes: record.ramBytes,
      priority: "user",
      joinsGroup: true,
    });
  }

  /** Freezes the VM's vCPUs. Agent calls answer 409 until it is resumed. */
  pause(hostname: string): Promise<VmRecord> {
    return this.vms.lock.run(hostname, async () => {
      const record = this.vms.record(hostname);
      const runtime = this.vms.runtime(hostname);
      if (record.state === "paused") return record;
      if (!runtime || record.state !== "running") {
        throw new CorralError("vm_not_running", `Cannot pause VM ${JSON.stringify(hostname)}: it is ${record.state}`);
      }
      await runtime.machine.pause();
      return this.vms.store.transition(record, "paused");
    });
  }

  /**
   * Unfreezes the vCPUs whatever stopped them: a pause, or the engine itself when the host could not store a
   * disk write (the failed writes are retried then). The machine's run state is checked afterwards: a VM whose
   * disk still cannot be written stops again at once, and that is a 507, not a resume.
   */
  resume(hostname: string): Promise<VmRecord> {
    return this.vms.lock.run(hostname, async () => {
      const record = this.vms.record(hostname);
      const runtime = this.vms.runtime(hostname);
      const frozen = runtime?.condition.diskStop !== undefined;
      if (record.state === "running" && !frozen) return record;
      if (!runtime || !(record.state === "paused" || (frozen && isLive(record.state)))) {
        throw new CorralError("vm_not_running", `Cannot resume VM ${JSON.stringify(hostname)}: it is ${record.state}`);
      }
      const machine = runtime.machine;
      // The engine retries the failed writes as soon as the vCPUs run: if they fail again it stops at once.
      const stoppedAgain = frozen
        ? machine.nextEvent("stopped", RETRY_SETTLE_MS).then(
            () => true,
            () => false,
          )
        : Promise.resolve(false);
      await machine.resume();
      await stoppedAgain;
      const status = await machine.runState();
      if (!status.running) {
        if (status.diskError) {
          runtime.condition.fromRunState(status);
          throw new CorralError(
            "insufficient_storage",
            `Cannot resume VM ${JSON.stringify(hostname)}: QEMU stopped it again because its disk writes still fail (${runtime.condition.diskStop?.reason ?? status.detail}); free space in ${this.vms.deps.stateDir} first`,
          );
        }
        throw new CorralError("engine_failed", `Cannot resume VM ${JSON.stringify(hostname)}: the engine reports it as ${status.detail} after the resume`);
      }
      runtime.condition.resumed();
      const running = record.state === "paused" ? this.vms.store.transition(record, "running") : record;
      if (frozen) this.vms.log.info({ vm: hostname }, "VM frozen by its disk resumed");
      void this.vms.rerunReadySteps(hostname);
      return running;
    });
  }

  /**
   * Powers a VM off: the guest flushes its disks, then the machine ends (killed if it takes over 10 s). Resolves once the VM's exit was handled:
   * a sandbox is gone with its disk (undefined), a persistent VM or a service is stopped with its disk kept.
   */
  async shutdown(hostname: string, options: { flush?: boolean } = {}): Promise<VmRecord | undefined> {
    const runtime = await this.vms.lock.run(hostname, async () => {
      const record = this.vms.record(hostname);
      const live = this.vms.runtime(hostname);
      if (!live || !isLive(record.state) || record.state === "suspending") {
        throw new CorralError("vm_not_running", `Cannot shut down VM ${JSON.stringify(hostname)}: it is ${record.state}`);
      }
      if (record.state === "running" && options.flush !== false) await live.syncDisks();
      this.vms.store.transition(record, "stopping");
      await live.machine.shutdown({ graceMs: 10_000 });
      return live;
    });
    // Outside the lock: handling the exit takes it.
    await this.vms.awaitExit(runtime);
    return this.vms.store.get(hostname);
  }

  /**
   * Reboots the guest in the same machine: the disks are flushed, the machine reset, the agent
   * re-attached. With `flush: false` it is a hard reset (the guest's unwritten data is lost).
   */
  reboot(hostname: string, options: { flush?: boolean } = {}): Promise<VmRecord> {
    return this.vms.lock.run(hostname, async () => {
      const record = this.vms.record(hostname);
      const runtime = this.vms.runtime(hostname);
      if (!runtime || record.state !== "running") {
        throw new CorralError(record.state === "paused" ? "vm_paused" : "vm_not_running", `Cannot reboot VM ${JSON.stringify(hostname)}: it is ${record.state}`);
      }
      // A reset would not run the vCPUs again: the disk has to take the held writes first (resume).
      assertNotFrozen(runtime, this.vms.deps.stateDir);
      if (options.flush !== false) await runtime.syncDisks();
      const booting = this.vms.store.transition(record, "booting");
      runtime.readiness.restarting();
      runtime.agent.reset();
      await runtime.machine.reset();
      this.vms.bringUp(runtime, booting);
      this.vms.log.info({ vm: hostname }, "VM rebooting");
      return booting;
    });
  }

  /** Boots a stopped VM again on its own disk, with the same identity (409 while it runs or is suspended). */
  relaunch(hostname: string): Promise<VmRecord> {
    return this.vms.lock.run(hostname, async () => {
      const record = this.vms.record(hostname);
      if (record.state === "suspended") throw new CorralError("conflict", `Cannot relaunch VM ${JSON.stringify(hostname)}: it is suspended (restore it)`);
      if (record.state !== "stopped" && record.state !== "failed") {
        throw new CorralError("conflict", `Cannot relaunch VM ${JSON.stringify(hostname)}: it is ${record.state}`);
      }
      return this.vms.launchHolding(record, this.admit(record));
    });
  }

  /**
   * Saves the VM's memory and device state next to its disk and ends its machine. Background jobs, open
   * files and the page cache are all in the saved state; `restore` brings it back. A failed suspend leaves
   * the VM as it was.
   */
  suspend(hostname: string): Promise<VmRecord> {
    return this.vms.lock.run(hostname, async () => {
      const record = this.vms.record(hostname);
      const runtime = this.vms.runtime(hostname);
      if (!runtime || (record.state !== "running" && record.state !== "paused")) {
        throw new CorralError("vm_not_running", `Cannot suspend VM ${JSON.stringify(hostname)}: it is ${record.state}`);
      }
      const wasRunning = record.state === "running";
      const paths = vmPaths(this.vms.deps.stateDir, hostname);
      const suspending = this.vms.store.transition(record, "suspending");
      const started = performance.now();
      try {
        // Left stopped, not ended: the record says "suspended" before the machine goes, so a daemon that dies
        // in between finds a saved state and an orphan machine, never a live record without its machine.
        await runtime.machine.saveState(paths.stateFile, { after: "stay" });
      } catch (err) {
        // The machine removed the partial file and runs again if it ran.
        if (runtime.alive) {
          this.vms.store.transition(suspending, wasRunning ? "running" : "paused");
        } else {
          this.vms.store.transition(suspending, "failed", { pid: null, pidStartTime: null });
        }
        throw (
          storageFullError(err, `the saved state of VM ${JSON.stringify(hostname)}`, this.vms.deps.stateDir) ??
          new CorralError("engine_failed", `Cannot suspend VM ${JSON.stringify(hostname)}: ${(err as Error).message}`, { cause: err })
        );
      }
      const suspended = this.vms.store.transition(suspending, "suspended", { pid: null, pidStartTime: null });
      this.vms.release(hostname);
      await runtime.machine.shutdown({ graceMs: 5000 });
      runtime.dispose();
      this.vms.log.info({ vm: hostname, seconds: ((performance.now() - started) / 1000).toFixed(2) }, "VM suspended");
      return suspended;
    });
  }

  /** Starts a suspended VM from its saved state; it runs on where it was once its agent reconnects. */
  restore(hostname: string): Promise<VmRecord> {
    return this.vms.lock.run(hostname, async () => {
      const record = this.vms.record(hostname);
      if (record.state !== "suspended") throw new CorralError("conflict", `Cannot restore VM ${JSON.stringify(hostname)}: it is ${record.state}, not suspended`);
      const paths = vmPaths(this.vms.deps.stateDir, hostname);
      const started = performance.now();
      const booting = await this.vms.launchHolding(record, this.admit(record), { restoreFrom: paths.stateFile });
      await rm(paths.stateFile, { force: true });
      this.vms.log.info({ vm: hostname, seconds: ((performance.now() - started) / 1000).toFixed(2) }, "VM restored");
      return booting;
    });
  }
}
