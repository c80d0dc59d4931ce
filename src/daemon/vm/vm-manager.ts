// The VM service: everything the routes ask of VMs (create, delete, list, health, exec, logs) and what the
// daemon does on its own (services at start-up, clean-up when a VM exits). Routes never touch QEMU, the
// agent or the store directly.
import { rm } from "node:fs/promises";
import type { ClientHttp2Stream } from "node:http2";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import type { AccelVerdict, ExitInfo } from "../../engine/index.ts";
import type { ImageStore } from "../../image/index.ts";
import { randomMac, USER_NET } from "../../net/user-network.ts";
import type { AgentHealth, ExecSpec } from "../../protocol/agent.ts";
import { CorralError, ERROR_STATUS, isErrorCode, type ErrorCode } from "../../protocol/errors.ts";
import { assertHostgroupName, assertHostname } from "../../protocol/names.ts";
import type { Logger } from "../../util/log.ts";
import { KeyedLock } from "../../util/keyed-lock.ts";
import { raceAbort } from "../../util/abort.ts";
import { tailLines } from "../../util/tail.ts";
import { AgentError, type AgentClient } from "../agent/agent-client.ts";
import type { DaemonConfig, HostGroupConfig } from "../config.ts";
import { settleExitedVm } from "./exit-policy.ts";
import { launchVm } from "./launch-vm.ts";
import { recoverVms } from "./recovery.ts";
import { vmPaths } from "./vm-paths.ts";
import type { VmRuntime } from "./vm-runtime.ts";
import { isLive } from "./vm-state.ts";
import type { NewVm, VmRecord, VmStore } from "./vm-store.ts";

export interface VmManagerDeps {
  stateDir: string;
  config: DaemonConfig;
  store: VmStore;
  images: ImageStore;
  accel: AccelVerdict;
  qemuBinary: string;
  log: Logger;
  /** How long a VM may take to boot to a responding agent before it is given up on. */
  bootDeadlineMs?: number;
}

export interface SandboxRequest {
  cpus?: number;
  ramBytes?: number;
  userdata?: string;
  sshKeys?: string[];
  tags?: string[];
  persistent?: boolean;
}

export type Readiness = "agent" | "userdata";

/**
 * Runs each time a VM's agent becomes ready (boot, restore, daemon restart), after its identity was applied
 * and before the VM counts as ready. Features use it to deliver what every guest must have (secrets).
 */
export type AgentReadyHook = (hostname: string, agent: AgentClient, signal: AbortSignal) => Promise<void>;

export interface NodeFilter {
  hostgroup?: string;
  tag?: string;
  tagPrefix?: string;
}

/** How long exec and health wait for an agent that is still coming up. */
const AGENT_WAIT_MS = 60_000;

export class VmManager {
  private readonly runtimes = new Map<string, VmRuntime>();
  private readonly lock = new KeyedLock();
  private readonly shutdown = new AbortController();
  /** Completes when the exit of each adopted runtime has been handled. */
  private readonly exitHandling = new WeakMap<VmRuntime, Promise<void>>();
  private readonly log: Logger;
  private readonly agentReadyHooks: AgentReadyHook[] = [];

  constructor(private readonly deps: VmManagerDeps) {
    this.log = deps.log;
  }

  // ---- host groups and records ----

  groups(): readonly HostGroupConfig[] {
    return this.deps.config.hostGroups;
  }

  group(name: string): HostGroupConfig {
    assertHostgroupName(name);
    const group = this.deps.config.hostGroups.find((g) => g.name === name);
    if (!group) throw new CorralError("hostgroup_not_found", `Host group ${JSON.stringify(name)} does not exist`);
    return group;
  }

  list(filter: NodeFilter = {}): VmRecord[] {
    let records = filter.hostgroup ? this.deps.store.listGroup(filter.hostgroup) : this.deps.store.list();
    if (filter.tag !== undefined) records = records.filter((r) => r.tags.includes(filter.tag as string));
    if (filter.tagPrefix !== undefined) records = records.filter((r) => r.tags.some((t) => t.startsWith(filter.tagPrefix as string)));
    return records;
  }

  get(hostname: string): VmRecord {
    assertHostname(hostname);
    const record = this.deps.store.get(hostname);
    if (!record) throw new CorralError("vm_not_found", `VM ${JSON.stringify(hostname)} does not exist`);
    return record;
  }

  /** Adds a hook run whenever a VM's agent becomes ready (see AgentReadyHook). */
  onAgentReady(hook: AgentReadyHook): void {
    this.agentReadyHooks.push(hook);
  }

  /** The agents of every VM that is ready now (paused VMs excluded: they cannot answer). */
  readyAgents(): { hostname: string; agent: AgentClient }[] {
    const ready: { hostname: string; agent: AgentClient }[] = [];
    for (const runtime of this.runtimes.values()) {
      if (runtime.isReady && this.deps.store.get(runtime.hostname)?.state === "running") ready.push({ hostname: runtime.hostname, agent: runtime.agent });
    }
    return ready;
  }

  /** When the VM's agent last answered a call, if it has since this daemon started. */
  lastAgentCall(hostname: string): Date | undefined {
    return this.runtimes.get(hostname)?.agent.lastCallAt;
  }

  // ---- create ----

  /** Creates a sandbox in `groupName` and starts it; resolves once QEMU runs (the guest boots on). */
  async createSandbox(groupName: string, request: SandboxRequest): Promise<VmRecord> {
    if (this.shutdown.signal.aborted) throw new CorralError("unavailable", "The daemon is shutting down");
    const group = this.group(groupName);
    const cpus = request.cpus ?? group.vcpu;
    const ramBytes = request.ramBytes ?? group.ramBytes;
    if (cpus > group.vcpu) {
      throw new CorralError("resources_exceeded", `Cannot create a VM with ${cpus} vCPUs in host group "${group.name}": its limit is ${group.vcpu}`);
    }
    if (ramBytes > group.ramBytes) {
      throw new CorralError("resources_exceeded", `Cannot create a VM with ${ramBytes} bytes of RAM in host group "${group.name}": its limit is ${group.ramBytes}`);
    }
    const image = await this.deps.images.resolve(group.image);
    const record = this.deps.store.insertSandbox(
      this.newVm(group, "sandbox", {
        cpus,
        ramBytes,
        persistent: request.persistent ?? false,
        userdata: request.userdata ?? group.userdata ?? null,
        sshKeys: [...group.sshKeys, ...(request.sshKeys ?? [])],
        tags: request.tags ?? [],
        imageVersion: image.version,
      }),
      group.count,
    );
    return this.lock.run(record.hostname, () => this.launch(record));
  }

  private newVm(group: HostGroupConfig, kind: NewVm["kind"], fields: Pick<NewVm, "cpus" | "ramBytes" | "persistent" | "userdata" | "sshKeys" | "tags" | "imageVersion">): NewVm {
    return {
      hostgroup: group.name,
      kind,
      image: group.image,
      ip: USER_NET.guestAddress,
      mac: randomMac(),
      accel: this.deps.accel.accel,
      ...fields,
    };
  }

  /**
   * Starts QEMU for a record (under the VM's lock) and takes charge of it. A brand-new VM that fails to start
   * leaves nothing behind; a relaunch that fails keeps its record, with the reason in `last_error`.
   */
  private async launch(record: VmRecord): Promise<VmRecord> {
    try {
      const launched = await launchVm(this.deps, record);
      this.adopt(launched.runtime, launched.record);
      return launched.record;
    } catch (err) {
      if (record.state !== "creating") this.markFailed(record, err);
      if (err instanceof CorralError) throw err;
      this.log.error({ vm: record.hostname, err }, "VM could not start");
      throw new CorralError("engine_failed", `Cannot start VM ${JSON.stringify(record.hostname)}: ${(err as Error).message}`, { cause: err });
    }
  }

  private markFailed(record: VmRecord, err: unknown): void {
    this.deps.store.recordError(record.hostname, record.incarnation, (err as Error).message);
    this.log.error({ vm: record.hostname, err }, "VM could not be relaunched");
  }

  /** Takes charge of a live VM: watches for its exit and brings its agent up. */
  private adopt(runtime: VmRuntime, record: VmRecord): void {
    this.runtimes.set(runtime.hostname, runtime);
    this.exitHandling.set(
      runtime,
      runtime.process.exited.then((info) => this.onExit(runtime.hostname, runtime.incarnation, info)).catch((err: unknown) => this.log.error({ vm: runtime.hostname, err }, "Cannot clean up after VM exit")),
    );
    runtime.ready = this.bringUp(runtime, record);
    runtime.ready.catch(() => undefined);
  }

  /** Connects to the agent and hands it the VM's identity; a VM that never answers is stopped. */
  private async bringUp(runtime: VmRuntime, record: VmRecord): Promise<void> {
    const signal = AbortSignal.any([this.shutdown.signal, AbortSignal.timeout(this.deps.bootDeadlineMs ?? 10 * 60_000)]);
    try {
      await runtime.agent.waitForConnection(signal, () => runtime.alive);
      await runtime.agent.applyIdentity({ hostname: record.hostname, userdata: record.userdata ?? undefined, ssh_keys: record.sshKeys }, signal);
      for (const hook of this.agentReadyHooks) {
        await hook(record.hostname, runtime.agent, signal).catch((err: unknown) => this.log.error({ vm: record.hostname, err }, "An agent-ready step failed"));
      }
    } catch (err) {
      if (runtime.alive && !this.shutdown.signal.aborted) {
        const tail = (await tailLines(vmPaths(this.deps.stateDir, record.hostname).serialLog, 5)).trim();
        this.log.error({ vm: record.hostname, err, serial: tail }, "VM agent never answered: stopping the VM");
        runtime.process.kill();
      }
      throw err;
    }
    runtime.isReady = true;
    await this.lock.run(record.hostname, async () => {
      const current = this.deps.store.get(record.hostname);
      if (current?.incarnation === runtime.incarnation && current.state === "booting") this.deps.store.transition(current, "running");
    });
    this.log.info({ vm: record.hostname, agent: runtime.agent.agentVersion }, "VM agent ready");
  }

  // ---- readiness ----

  /** Resolves when the VM's agent answers (and, for "userdata", its userdata has finished). */
  async waitReady(hostname: string, until: Readiness, signal: AbortSignal): Promise<void> {
    const runtime = this.runtimes.get(hostname);
    if (!runtime) throw new CorralError("vm_not_running", `VM ${JSON.stringify(hostname)} is not running`);
    try {
      await raceAbort(runtime.ready, signal, () => new CorralError("timeout", "Timed out waiting for the VM"));
      if (until === "agent") return;
      for (;;) {
        const health = await runtime.agent.health(signal);
        if (health.userdata_ran) return;
        await sleep(200, undefined, { signal });
      }
    } catch (err) {
      if (signal.aborted) throw new CorralError("timeout", `Timed out waiting for VM ${JSON.stringify(hostname)}`, { cause: err });
      throw new CorralError("engine_failed", `VM ${JSON.stringify(hostname)} stopped before its agent answered`, { cause: err });
    }
  }

  // ---- delete ----

  /** Deletes a sandbox (services only with `force`): stops QEMU and removes its disk and record. */
  async deleteNode(groupName: string, hostname: string, options: { force?: boolean } = {}): Promise<{ diskRemoved: boolean }> {
    this.group(groupName);
    assertHostname(hostname);
    return this.lock.run(hostname, async () => {
      const record = this.get(hostname);
      if (record.hostgroup !== groupName) {
        throw new CorralError("vm_not_found", `VM ${JSON.stringify(hostname)} is not in host group ${JSON.stringify(groupName)}`);
      }
      if (record.kind === "service" && !options.force) {
        throw new CorralError("forbidden", `Cannot delete VM ${JSON.stringify(hostname)}: it is a service of host group "${groupName}" (change the daemon's configuration instead)`);
      }
      await this.killRuntime(hostname);
      await rm(vmPaths(this.deps.stateDir, hostname).dir, { recursive: true, force: true });
      this.deps.store.delete(hostname, record.incarnation);
      this.log.info({ vm: hostname }, "VM deleted");
      return { diskRemoved: true };
    });
  }

  private async killRuntime(hostname: string): Promise<void> {
    const runtime = this.runtimes.get(hostname);
    if (!runtime) return;
    this.runtimes.delete(hostname);
    runtime.process.kill("SIGKILL");
    await Promise.race([runtime.process.exited, sleep(10_000)]);
    runtime.dispose();
  }

  // ---- exit ----

  private async onExit(hostname: string, incarnation: number, info: ExitInfo): Promise<void> {
    await this.lock.run(hostname, async () => {
      const runtime = this.runtimes.get(hostname);
      if (runtime?.incarnation === incarnation) {
        this.runtimes.delete(hostname);
        runtime.dispose();
      }
      const record = this.deps.store.get(hostname);
      if (!record || record.incarnation !== incarnation || !isLive(record.state)) return;
      const how = info.code !== null ? `exit code ${info.code}` : info.signal ? `signal ${info.signal}` : "no status";
      const outcome = await settleExitedVm(this.deps.stateDir, this.deps.store, record);
      this.log.info({ vm: hostname, how, outcome }, outcome === "removed" ? "Sandbox exited: removed with its disk" : "VM exited");
    });
  }

  // ---- agent calls ----

  /** The live runtime of a VM whose agent is (or becomes, within a bounded wait) ready. */
  private async readyRuntime(hostname: string, signal: AbortSignal): Promise<VmRuntime> {
    const record = this.get(hostname);
    const runtime = this.runtimes.get(hostname);
    if (!runtime || !isLive(record.state)) {
      throw new CorralError("vm_not_running", `VM ${JSON.stringify(hostname)} is not running (it is ${record.state})`);
    }
    if (record.state === "paused") throw new CorralError("vm_paused", `VM ${JSON.stringify(hostname)} is paused: resume it first`);
    if (!runtime.isReady) {
      const wait = AbortSignal.any([signal, AbortSignal.timeout(AGENT_WAIT_MS)]);
      await raceAbort(runtime.ready, wait, () => new CorralError("timeout", "Timed out waiting for the VM")).catch((err: unknown) => {
        throw new CorralError("agent_unavailable", `The agent of VM ${JSON.stringify(hostname)} is not answering`, { cause: err });
      });
    }
    return runtime;
  }

  /** Agent health; `agent_unavailable` (503) until the agent answers. */
  async health(hostname: string, signal: AbortSignal): Promise<AgentHealth> {
    const record = this.get(hostname);
    const runtime = this.runtimes.get(hostname);
    if (!runtime || !isLive(record.state)) {
      throw new CorralError("vm_not_running", `VM ${JSON.stringify(hostname)} is not running (it is ${record.state})`);
    }
    if (record.state === "paused") throw new CorralError("vm_paused", `VM ${JSON.stringify(hostname)} is paused: resume it first`);
    if (!runtime.isReady) throw new CorralError("agent_unavailable", `The agent of VM ${JSON.stringify(hostname)} is not ready yet`);
    try {
      return await runtime.agent.health(signal);
    } catch (err) {
      throw agentFailure(hostname, err);
    }
  }

  /**
   * Runs `call` against the VM's agent once it is ready (409 while paused or stopped). Errors the agent
   * answers with keep their status and code; a lost agent is 503.
   */
  async withAgent<T>(hostname: string, signal: AbortSignal, call: (agent: AgentClient) => Promise<T>): Promise<T> {
    const runtime = await this.readyRuntime(hostname, signal);
    try {
      return await call(runtime.agent);
    } catch (err) {
      throw agentFailure(hostname, err);
    }
  }

  exec(hostname: string, spec: ExecSpec, stdin: Readable | undefined, signal: AbortSignal): Promise<ClientHttp2Stream> {
    return this.withAgent(hostname, signal, (agent) => agent.exec(spec, stdin, signal));
  }

  // ---- lifecycle ----

  /** Freezes the VM's vCPUs (QMP stop). Agent calls answer 409 until it is resumed. */
  async pause(hostname: string): Promise<VmRecord> {
    return this.lock.run(hostname, async () => {
      const record = this.get(hostname);
      const runtime = this.runtimes.get(hostname);
      if (record.state === "paused") return record;
      if (!runtime?.qmp || record.state !== "running") {
        throw new CorralError("vm_not_running", `Cannot pause VM ${JSON.stringify(hostname)}: it is ${record.state}`);
      }
      await runtime.qmp.stop();
      return this.deps.store.transition(record, "paused");
    });
  }

  async resume(hostname: string): Promise<VmRecord> {
    return this.lock.run(hostname, async () => {
      const record = this.get(hostname);
      const runtime = this.runtimes.get(hostname);
      if (record.state === "running") return record;
      if (!runtime?.qmp || record.state !== "paused") {
        throw new CorralError("vm_not_running", `Cannot resume VM ${JSON.stringify(hostname)}: it is ${record.state}`);
      }
      await runtime.qmp.cont();
      return this.deps.store.transition(record, "running");
    });
  }

  async logs(hostname: string, lines: number): Promise<string> {
    this.get(hostname);
    // The serial console ends lines with CRLF; clients expect plain newlines.
    return (await tailLines(vmPaths(this.deps.stateDir, hostname).serialLog, lines)).replaceAll("\r\n", "\n");
  }

  // ---- daemon life ----

  /** Recovers from the previous daemon (re-attaching running VMs), then starts every group's services. */
  async start(): Promise<void> {
    for (const { record, runtime } of await recoverVms(this.deps.stateDir, this.deps.store, this.log)) this.adopt(runtime, record);
    for (const group of this.deps.config.hostGroups) {
      for (let index = 1; index <= group.count; index++) await this.ensureService(group, `${group.name}-${index}`);
    }
  }

  private async ensureService(group: HostGroupConfig, hostname: string): Promise<void> {
    await this.lock.run(hostname, async () => {
      let record = this.deps.store.get(hostname);
      if (record && record.kind !== "service") {
        this.log.error({ vm: hostname }, `Cannot start service "${hostname}": a sandbox has that name`);
        return;
      }
      if (record && isLive(record.state)) return;
      if (!record) {
        const image = await this.deps.images.resolve(group.image);
        record = this.deps.store.insertNamed(
          hostname,
          this.newVm(group, "service", {
            cpus: group.vcpu,
            ramBytes: group.ramBytes,
            persistent: group.persistent,
            userdata: group.userdata ?? null,
            sshKeys: [...group.sshKeys],
            tags: [],
            imageVersion: image.version,
          }),
        );
      }
      try {
        await this.launch(record);
      } catch (err) {
        this.log.error({ vm: hostname, err }, "Service could not start");
      }
    });
  }

  /**
   * Graceful stop: sandboxes are deleted with their disks; persistent VMs and services are powered off with
   * their disks kept. (A daemon killed with -9 does none of this: its VMs keep running and are re-attached.)
   */
  async stop(): Promise<void> {
    this.shutdown.abort();
    const work = [...this.runtimes.values()].map(async (runtime) => {
      const record = this.deps.store.get(runtime.hostname);
      if (!record) return;
      if (record.kind === "sandbox" && !record.persistent) {
        await this.lock.run(runtime.hostname, async () => {
          await this.killRuntime(runtime.hostname);
          await rm(vmPaths(this.deps.stateDir, runtime.hostname).dir, { recursive: true, force: true });
          this.deps.store.delete(runtime.hostname, record.incarnation);
        });
        return;
      }
      // Persistent disks: have the guest write its page cache out before QEMU goes.
      await runtime.syncDisks();
      await runtime.qmp?.quit().catch(() => undefined);
      await Promise.race([runtime.process.exited, sleep(5000)]);
      runtime.process.kill("SIGKILL");
      await this.exitHandling.get(runtime);
    });
    await Promise.all(work);
  }
}

/** Codes the agent may answer with, by the status they go with when the agent's own code is not ours. */
const AGENT_STATUS_CODES: Record<number, ErrorCode> = {
  400: "invalid_request",
  404: "not_found",
  409: "conflict",
  410: "gone",
  413: "payload_too_large",
};

function agentFailure(hostname: string, err: unknown): CorralError {
  if (err instanceof CorralError) return err;
  if (err instanceof AgentError && err.status !== undefined && err.status >= 400 && err.status < 500) {
    const code = isErrorCode(err.code) && ERROR_STATUS[err.code] === err.status ? err.code : AGENT_STATUS_CODES[err.status];
    if (code) return new CorralError(code, err.message, { cause: err, status: err.status });
  }
  const detail = err instanceof Error ? err.message : String(err);
  return new CorralError("agent_unavailable", `The agent of VM ${JSON.stringify(hostname)} failed: ${detail}`, { cause: err });
}
