// TTstack's agent API (docs/ttstack-wire-notes.md §5), what a fleet controller calls on each host, TTstack's
// own `tt-ctl` as much as Corral's: GET /api/info (this host's resources, engines, storage, images), GET
// /api/images, and the VMs: POST|GET /api/vms, GET|DELETE /api/vms/ID, POST /api/vms/ID/stop|start. Every
// answer is TTstack's envelope with its status codes (201 for a create, 200 {"ok":true} for a delete, a stop
// or a start; a delete of an unknown VM too, as TTstack's agent answers it). Corral adds what Virtumancer's
// power actions and live stats need: POST /api/vms/ID/reboot (?force: a hard reset), GET /api/vms/ID/stats.
// Resources in use are the VMs that run (paused ones included: they hold their memory).
import { readFile, statfs } from "node:fs/promises";
import { cpus, hostname, totalmem } from "node:os";
import { Type } from "@sinclair/typebox";
import { processCpuNanoseconds, processStartedAt } from "../../engine/index.ts";
import { libvirtState } from "../../protocol/controller.ts";
import { CorralError } from "../../protocol/errors.ts";
import { STATS_PATH, type VmSnapshot } from "../../protocol/stats.ts";
import { DoneEnvelopeSchema, TT_DONE, ttOk, ttVmState, unixSeconds } from "../../protocol/ttstack.ts";
import type { HealthFields } from "../../protocol/vm-health.ts";
import type { VmNetworkDescription } from "../../protocol/net.ts";
import {
  AGENT_ANSWERS,
  AgentVmLookupParams,
  AgentVmParams,
  CORRAL_ENGINES,
  CreateAgentVmSchema,
  StopAgentVmQuerySchema,
  TTSTACK_DEFAULTS,
  type AgentInfo,
  type AgentVm,
  type AgentVmDetail,
  type VmHardware,
  type VmStats,
} from "../../protocol/ttstack-agent.ts";
import { imageSizeMiB } from "../../image/index.ts";
import type { DaemonApp, DaemonContext } from "../http/context.ts";
import { createForClient } from "./client-create.ts";
import { vmPaths } from "../vm/vm-paths.ts";
import { shownState } from "./nodes-view.ts";
import { isHostname } from "../../protocol/names.ts";
import { isLive } from "../../protocol/vm-lifecycle.ts";
import type { VmRecord } from "../vm/vm-store.ts";

const MiB = 1024 * 1024;
const STATS_TIMEOUT_MS = 5000;
/** The tag that keeps which fleet controller made a VM (CreateAgentVm's `fleet_id`). */
const FLEET_TAG = "fleet=";

export function ttstackAgentRoutes(app: DaemonApp, ctx: DaemonContext): void {
  const { manager } = ctx;
  const view = vmViewer(ctx);
  // TTstack names VMs more freely than hostnames allow: one that is no hostname is simply not here (404).
  const lookup = (id: string): VmRecord => {
    if (!isHostname(id)) throw new CorralError("vm_not_found", `VM ${JSON.stringify(id)} does not exist`);
    return manager.get(id);
  };

  app.get("/api/info", { schema: { response: { 200: AGENT_ANSWERS.info } } }, async () => {
    const live = manager.list().filter((vm) => isLive(vm.state));
    const disk = await statfs(ctx.stateDir);
    const images = await ctx.images.list();
    const info: AgentInfo = {
      host_id: ctx.hostId,
      resource: {
        cpu_total: cpus().length,
        cpu_used: live.reduce((sum, vm) => sum + vm.cpus, 0),
        mem_total: Math.floor(totalmem() / MiB),
        mem_used: Math.ceil(live.reduce((sum, vm) => sum + vm.ramBytes, 0) / MiB),
        disk_total: Math.floor((disk.blocks * disk.bsize) / MiB),
        disk_used: Math.ceil(((disk.blocks - disk.bfree) * disk.bsize) / MiB),
        vm_count: live.length,
      },
      engines: [...CORRAL_ENGINES],
      storage: "file",
      images: images.map((i) => i.name),
      corral_version: ctx.version,
      hostname: hostname(),
      threads_per_core: await threadsPerCore(),
    };
    return ttOk(info);
  });

  app.get("/api/images", { schema: { response: { 200: AGENT_ANSWERS.images } } }, async () => ttOk((await ctx.images.list()).map((i) => i.name)));

  app.post("/api/vms", { schema: { body: CreateAgentVmSchema, response: { 201: AGENT_ANSWERS.created } } }, async (request, reply) => {
    const body = request.body;
    const engine = body.engine ?? TTSTACK_DEFAULTS.engine;
    if (!(CORRAL_ENGINES as readonly string[]).includes(engine)) {
      throw new CorralError("unsupported_engine", `Engine ${JSON.stringify(engine)} is not supported: this host runs ${CORRAL_ENGINES.map((e) => JSON.stringify(e)).join(", ")}`);
    }
    const vm = {
      hostname: body.vm_id,
      envId: body.env_id === undefined || body.env_id === "" ? null : body.env_id,
      image: body.image,
      cpus: body.cpu ?? TTSTACK_DEFAULTS.cpu,
      ramBytes: (body.mem ?? TTSTACK_DEFAULTS.mem) * MiB,
      diskMiB: body.disk ?? TTSTACK_DEFAULTS.disk,
      // Port 22 is always forwarded (first, as TTstack's agent does): the guest's SSH server takes the keys given.
      ports: [22, ...(body.ports ?? []).filter((p) => p !== 22)],
      denyOutgoing: body.deny_outgoing ?? false,
      sshKeys: body.ssh_keys ?? [],
      tags: body.fleet_id === undefined ? [] : [`${FLEET_TAG}${body.fleet_id}`],
    };
    // A controller that gave up on this create (its deadline, its own crash) never learns the VM: it goes.
    const record = await createForClient(manager, reply, { make: (signal) => manager.createApiVm(vm, { signal }) });
    return reply.code(201).send(ttOk({ vm: await view(record) }));
  });

  app.get("/api/vms", { schema: { querystring: Type.Object({ env_id: Type.Optional(Type.String({ minLength: 1 })) }), response: { 200: AGENT_ANSWERS.vms } } }, async (request) => {
    const envId = request.query.env_id;
    const records = manager.list().filter((r) => envId === undefined || r.envId === envId);
    return ttOk(await Promise.all(records.map(view)));
  });

  app.get("/api/vms/:id", { schema: { params: AgentVmLookupParams, response: { 200: AGENT_ANSWERS.vm } } }, async (request) => {
    const record = lookup(request.params.id);
    const vm = await view(record);
    const detail: AgentVmDetail = {
      ...vm,
      hardware: {
        disks: [
          {
            type: "file",
            device: "disk",
            driver: { driver_name: "qemu", type: "qcow2" },
            path: vmPaths(ctx.stateDir, record.hostname).disk,
            target: { dev: "vda", bus: "virtio" },
            size_mib: vm.disk,
          },
        ],
        networks: [hardwareNic(manager.networkOf(record))],
      },
    };
    return ttOk(detail);
  });

  // As TTstack's agent: deleting a VM this host does not have succeeds (it is gone either way).
  app.delete("/api/vms/:id", { schema: { params: AgentVmLookupParams, response: { 200: DoneEnvelopeSchema } } }, async (request) => {
    const record = manager.list().find((r) => r.hostname === request.params.id);
    if (record) await manager.deleteNode(record.hostgroup, record.hostname);
    return TT_DONE;
  });

  app.post("/api/vms/:id/stop", { schema: { params: AgentVmLookupParams, querystring: StopAgentVmQuerySchema, response: { 200: DoneEnvelopeSchema } } }, async (request) => {
    const before = lookup(request.params.id);
    if (before.state !== "stopped") await manager.power.shutdown(before.hostname, { flush: request.query.force !== true });
    return TT_DONE;
  });

  app.post("/api/vms/:id/start", { schema: { params: AgentVmLookupParams, response: { 200: DoneEnvelopeSchema } } }, async (request) => {
    const record = lookup(request.params.id);
    // Paused (on request, or by QEMU when the host's disk was full): starting it means letting it run again.
    if (record.state === "paused" || manager.healthOf(record).health === "disk_full") await manager.power.resume(record.hostname);
    else if (record.state === "suspended") await manager.power.restore(record.hostname);
    else if (!isLive(record.state)) await manager.power.relaunch(record.hostname);
    return TT_DONE;
  });

  app.post("/api/vms/:id/reboot", { schema: { params: AgentVmParams, querystring: StopAgentVmQuerySchema, response: { 200: DoneEnvelopeSchema } } }, async (request) => {
    await manager.power.reboot(request.params.id, { flush: request.query.force !== true });
    return TT_DONE;
  });

  app.get("/api/vms/:id/stats", { schema: { params: AgentVmParams, response: { 200: AGENT_ANSWERS.stats } } }, async (request) =>
    ttOk(await statsOf(ctx, manager.get(request.params.id))),
  );
}

/** Hardware threads per core, from the first CPU's siblings list ("0-1", "0,4" or "0"). */
async function threadsPerCore(): Promise<number> {
  try {
    const list = (await readFile("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list", "utf8")).trim();
    return list.split(",").reduce((sum, part) => {
      const [from, to] = part.split("-").map(Number);
      return sum + (to === undefined ? 1 : to - (from ?? 0) + 1);
    }, 0);
  } catch {
    return 1;
  }
}

/** A VM in the agent API's shape; disk sizes of images are looked up once per image version. */
function vmViewer(ctx: DaemonContext): (record: VmRecord) => Promise<AgentVm> {
  const imageSizes = new Map<string, Promise<number>>();
  const imageSize = (record: VmRecord): Promise<number> => {
    const key = `${record.image}@${record.imageVersion}`;
    let size = imageSizes.get(key);
    if (!size) {
      size = ctx.images.load(record.image, record.imageVersion).then(imageSizeMiB, () => 0);
      imageSizes.set(key, size);
    }
    return size;
  };
  return async (record) => ({
    id: record.hostname,
    env_id: record.envId ?? "",
    host_id: ctx.hostId,
    image: record.image,
    engine: "qemu",
    cpu: record.cpus,
    mem: Math.ceil(record.ramBytes / MiB),
    disk: record.diskMiB ?? (await imageSize(record)),
    ip: record.ip,
    port_map: Object.fromEntries(record.portMap.map((p) => [String(p.guest), p.host])),
    created_at: unixSeconds(record.createdAt),
    hostgroup: record.hostgroup,
    ports: record.portMap.map((p) => p.guest),
    deny_outgoing: record.denyOutgoing,
    mac: record.mac,
    last_error: record.lastError,
    started_at: startedAt(record),
    fleet_id: record.tags.find((t) => t.startsWith(FLEET_TAG))?.slice(FLEET_TAG.length) ?? null,
    ...stateAndHealth(record, ctx.manager.healthOf(record)),
  });
}

/** The VM's NIC as libvirt's domain XML names it: a TAP on a bridge is "bridge", isolated mode's TAP "ethernet". */
export function hardwareNic(network: VmNetworkDescription): VmHardware["networks"][number] {
  const nic = network.interface;
  const type = nic.mode === "bridge" ? "bridge" : nic.mode === "isolated" ? "ethernet" : "user";
  return {
    type,
    mac: { address: nic.mac },
    source: nic.bridge !== null ? { mode: nic.mode, bridge: nic.bridge } : { mode: nic.mode },
    model: { model_type: "virtio" },
    target: { dev: nic.target_dev ?? "eth0" },
    ip: { address: `${nic.address}/${nic.prefix_length}`, gateway: nic.gateway },
    policy: { source: network.policy_source, allow: network.effective.allow, drop: network.effective.drop, deny_outgoing: network.deny_outgoing },
  };
}

/**
 * The NIC's byte counts from the host's side of a TAP-mode VM (the TAP or veth end): what the host device
 * sends, the guest reads. From /proc/net/dev, which shows the daemon's own network namespace (sysfs shows the
 * namespace it was mounted in). undefined when the device is gone or the VM is in user mode.
 */
export async function hostNicCounters(device: string | null): Promise<{ device: string; read_bytes: number; write_bytes: number } | undefined> {
  if (device === null) return undefined;
  const table = await readFile("/proc/net/dev", "utf8").catch(() => "");
  for (const line of table.split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 0 || line.slice(0, colon).trim() !== device) continue;
    const fields = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .map(Number);
    // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit: bytes …
    const [received, sent] = [fields[0], fields[8]];
    if (received === undefined || sent === undefined || Number.isNaN(received) || Number.isNaN(sent)) return undefined;
    return { device, read_bytes: sent, write_bytes: received };
  }
  return undefined;
}

/**
 * When the VM's current run began: its QEMU process's start (Virtumancer shows the uptime from it). A reboot
 * in place keeps the process; a start, a restore or a clone makes a new one. null when it has no process.
 */
function startedAt(record: VmRecord): string | null {
  if (!isLive(record.state) || record.pid === null) return null;
  return processStartedAt(record.pid)?.toISOString() ?? null;
}

/** TTstack's state and Corral's (see shownState) beside it, and the health fields (no `health_since`). */
function stateAndHealth(record: VmRecord, fields: HealthFields): Pick<AgentVm, "state" | "status" | "health" | "health_detail"> {
  const status = shownState(record, fields);
  const states = { state: ttVmState(status), status };
  return fields.health_detail === undefined ? { ...states, health: fields.health } : { ...states, health: fields.health, health_detail: fields.health_detail };
}

/** Virtumancer's live numbers: CPU time from the QEMU process, memory, disk and network from the guest. */
async function statsOf(ctx: DaemonContext, record: VmRecord): Promise<VmStats> {
  let snapshot: VmSnapshot | undefined;
  if (record.state === "running") {
    const signal = AbortSignal.timeout(STATS_TIMEOUT_MS);
    snapshot = await ctx.manager.withAgent(record.hostname, signal, (agent) => agent.callJson<VmSnapshot>("GET", STATS_PATH, { signal })).catch(() => undefined);
  }
  const maxKiB = Math.floor(record.ramBytes / 1024);
  // TAP modes: the host's device counts the NIC's traffic, named as the hardware view names it (target.dev).
  const hostCounters = isLive(record.state) ? await hostNicCounters(ctx.manager.networkOf(record).interface.target_dev) : undefined;
  return {
    state: libvirtState(shownState(record, ctx.manager.healthOf(record))),
    memory: snapshot ? Math.floor(snapshot.memoryUsed / 1024) : isLive(record.state) ? maxKiB : 0,
    max_mem: maxKiB,
    vcpu: record.cpus,
    cpu_time: Math.round((isLive(record.state) && record.pid !== null ? processCpuNanoseconds(record.pid) : undefined) ?? 0),
    disk_stats: snapshot ? [{ device: "vda", read_bytes: snapshot.diskReadTotal, write_bytes: snapshot.diskWriteTotal }] : [],
    net_stats: hostCounters ? [hostCounters] : snapshot ? [{ device: "eth0", read_bytes: snapshot.networkReadTotal, write_bytes: snapshot.networkWriteTotal }] : [],
  };
}
