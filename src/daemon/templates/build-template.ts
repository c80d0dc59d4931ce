// Making a template (DESIGN.md "Fast start"): boot a VM whose RAM is a shared file, wait for its agent,
// freeze it, and save its device state with `x-ignore-shared` (the RAM stays in the file: the state is a
// few dozen KB and takes milliseconds). The agent connection stays open across the save, so in every clone
// the agent's port is still "connected" and its blocked read simply returns the next host's HELLO.
import { randomBytes } from "node:crypto";
import { chmod, mkdir, rename, rm, writeFile } from "node:fs/promises";
import type { AccelVerdict, Engine, Machine } from "../../engine/index.ts";
import { createOverlay, type ImageVersion } from "../../image/index.ts";
import type { AttachmentProvider } from "../../net/attachment.ts";
import { randomMac } from "../../net/user-network.ts";
import { SECRET_AGENT_PATHS } from "../../protocol/secrets.ts";
import type { Logger } from "../../util/log.ts";
import { AgentClient } from "../agent/agent-client.ts";
import { attachmentRequest, machineSpecFor } from "../vm/launch-vm.ts";
import { Reverter } from "../../util/reverter.ts";
import { backRamFile } from "./ram-file.ts";
import { templateBuildPaths, templatePaths, type TemplatePaths } from "./template-paths.ts";

const MiB = 1024 * 1024;

/** What `template.json` holds; the `key` says which host group, image and size it serves. */
export interface TemplateMeta {
  id: string;
  key: string;
  hostgroup: string;
  image: string;
  image_version: string;
  cpus: number;
  ram_bytes: number;
  built_at: string;
  build_ms: number;
}

export interface TemplateBuildInput {
  id: string;
  key: string;
  hostgroup: string;
  image: ImageVersion;
  cpus: number;
  ramBytes: number;
}

export interface TemplateBuildDeps {
  stateDir: string;
  accel: AccelVerdict;
  tscKhz: number;
  /** Runs the template's machine (see src/engine/machine.ts). */
  engine: Engine;
  log: Logger;
  /**
   * The group id every QEMU runs with: the wall between guests and the host's services keys on it (see
   * src/net/host-isolation.ts). Undefined when the wall is off.
   */
  guestGid: number | undefined;
  /** The template's NIC: user mode, or a TAP attached to nothing for a TAP-mode group (see detached-tap-attachment.ts). */
  network: AttachmentProvider;
}

/** The hostname the template's guest boots with; each clone is given its own when its agent connects. */
const TEMPLATE_HOSTNAME = "corral-template";

/** Builds a template; resolves with its metadata once its folder is complete. `signal` abandons the build. */
export async function buildTemplate(deps: TemplateBuildDeps, input: TemplateBuildInput, signal: AbortSignal): Promise<TemplateMeta> {
  const started = performance.now();
  const paths = templateBuildPaths(deps.stateDir, input.id);
  await rm(paths.dir, { recursive: true, force: true });
  await mkdir(paths.dir, { recursive: true, mode: 0o700 });
  let running: Machine | undefined;
  const agent = new AgentClient(paths.agentSocket);
  try {
    await createOverlay(input.image, paths.disk);
    // On tmpfs, every page the file may ever need is allocated now, or the build fails here (see ram-file.ts).
    await backRamFile(paths.ram, Math.ceil(input.ramBytes / MiB) * MiB);
    const machine = { hostname: TEMPLATE_HOSTNAME, mac: randomMac(), cpus: input.cpus, ramBytes: input.ramBytes };
    const attachment = await deps.network.attachmentFor(attachmentRequest({ ...machine, hostgroup: input.hostgroup }, "template"));
    const spec = { ...machineSpecFor(machine, paths, input.image, deps.accel, deps.tscKhz, attachment), memoryFile: { path: paths.ram, shared: true } };
    const booted = await deps.engine.start(spec, paths.machine, { gid: deps.guestGid, argvPrefix: attachment.launchPrefix });
    running = booted;
    if (attachment.needsPlumbing) {
      // The machine is killed below on any failure, which takes what plumbing made with it; the rest is undone here.
      const revert = new Reverter((what, err) => deps.log.warn({ err }, `Cannot undo ${what}`));
      try {
        await attachment.plumb(booted.pid, revert, signal);
        await booted.resume();
      } catch (err) {
        await revert.revert();
        throw err;
      }
    }
    await agent.waitForConnection(signal, () => booted.running);
    await warmUpAgent(agent, { hostname: TEMPLATE_HOSTNAME, mac: machine.mac }, signal);
    signal.throwIfAborted();
    // The state leaves the RAM in the shared file: a few dozen KB. The machine ends once it is written.
    await booted.useMemoryTemplate();
    await booted.saveState(paths.state, { after: "quit", graceMs: 10_000 });
    agent.close();
    booted.dispose();
    running = undefined;
    await finish(paths, deps.stateDir, input.id);
    const meta: TemplateMeta = {
      id: input.id,
      key: input.key,
      hostgroup: input.hostgroup,
      image: input.image.name,
      image_version: input.image.version,
      cpus: input.cpus,
      ram_bytes: input.ramBytes,
      built_at: new Date().toISOString(),
      build_ms: Math.round(performance.now() - started),
    };
    const final = templatePaths(deps.stateDir, input.id);
    await writeFile(final.meta, `${JSON.stringify(meta, null, 2)}\n`, { mode: 0o600 });
    return meta;
  } catch (err) {
    agent.close();
    if (running) {
      await running.kill();
      running.dispose();
    }
    await rm(paths.dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Runs, once, the agent code every clone runs first (taking an identity, the secrets list, an exec): whatever
 * Node compiles or loads on first use is then in the snapshot (a template), or already translated by QEMU
 * (a warm-pool clone). Under emulation, first use is what makes a clone slow. The identity is provisional
 * (`template: true`: userdata is left to the VM that gets the real one).
 */
export async function warmUpAgent(agent: AgentClient, identity: { hostname: string; mac?: string }, signal: AbortSignal): Promise<void> {
  await agent.health(signal);
  await agent.applyIdentity({ ...identity, time_ms: Date.now(), machine_id: randomBytes(16).toString("hex"), entropy: randomBytes(64).toString("base64"), template: true }, signal);
  await agent.callJson("GET", SECRET_AGENT_PATHS.secrets, { signal });
  const { stream: frames } = await agent.exec({ cmd: "true", args: [], env: [], stdin: false, stdio: "text" }, undefined, signal);
  for await (const _frame of frames) {
    // drained: the exec is over when its stream ends
  }
}

/** Drops what only the build needed, freezes the disk and RAM, and moves the folder to its final name. */
async function finish(paths: TemplatePaths, stateDir: string, id: string): Promise<void> {
  for (const leftover of [paths.machine.control, paths.agentSocket, paths.machine.stateSocket, paths.machine.pidFile, paths.machine.transcript])
    await rm(leftover, { force: true });
  // Clones back their overlays on the disk: it may never change again. (The RAM file stays writable:
  // QEMU 7.2 opens a memory backend's file read-write even for a private mapping; clones never write to it.)
  await chmod(paths.disk, 0o400);
  await rename(paths.dir, templatePaths(stateDir, id).dir);
}
