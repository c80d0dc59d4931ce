// Slicer's isolated mode for one VM: QEMU runs as `unshare --net -- qemu …` and creates its TAP `tap0` in that
// fresh, unnamed namespace; plumb() joins it to the host with a veth pair (host end `hostIfname` holding the
// block's gateway /30, namespace end `veth0`), bridges `tap0` and `veth0` on `br0` inside the namespace, and
// loads the VM's anti-spoof guard and egress policy there (vm-rules.ts). Everything but the host end lives in
// QEMU's namespace and the host end is the peer of a device in it, so all of it vanishes when QEMU dies,
// kill -9 included: nothing to leak, no /run/netns name. The host-side rules (masquerade of the range, DNAT of
// port maps, allow entries naming the host, drops between VMs) are the network manager's host tables.
// Three process spawns: `ip -batch -` on the host, `nft -f -` and `ip -batch -` through nsenter.
import { readFile, stat, writeFile } from "node:fs/promises";
import type { NicView } from "../protocol/net.ts";
import type { Reverter } from "../util/reverter.ts";
import { findProgram, run } from "../util/run.ts";
import type { GuestNetwork, NetdevSpec, NetworkAttachment } from "./attachment.ts";
import { formatIpv4 } from "./cidr.ts";
import type { EgressPolicy } from "./network-config.ts";
import { digestInListing, expectedDigests, guardTable, policyTable, vmRulesScript, VM_BRIDGE, VM_TABLE, VM_TAP, VM_VETH, type VmBlock, type VmRulesInput } from "./vm-rules.ts";

/** QEMU is exec'd through this: same pid, its own network namespace (unshare execs). */
export const ISOLATED_LAUNCH_PREFIX: readonly string[] = Object.freeze(["unshare", "--net", "--"]);

export interface IsolatedAttachmentInput {
  /** The host end of the veth (≤ 15 characters, unique on the host: the network manager names it). */
  readonly hostIfname: string;
  /** The VM's /30: the host end gets `gateway`, the guest `address`. */
  readonly block: VmBlock;
  readonly mac: string;
  readonly dns: readonly string[];
  readonly policy: EgressPolicy;
  readonly denyOutgoing: boolean;
  /** Guest port → host port; the host DNATs, the namespace lets only these guest ports in. */
  readonly portMap: readonly { readonly guest: number; readonly host: number }[];
  readonly vhost: boolean;
  /** The host end's alias (`corral:<tag>:<group>:<device_id>`), so recovery can tell this daemon's links. */
  readonly alias?: string;
}

/** Runs a program with `input` on its stdin and returns its stdout (tests wrap it to inject failures). */
export type CommandRunner = (file: string, args: readonly string[], input: string, signal?: AbortSignal) => Promise<string>;

export interface IsolatedDeps {
  readonly run?: CommandRunner;
  /** How long plumb() waits for QEMU to be in its namespace with its TAP made (QEMU starts slowly under TCG). */
  readonly readyTimeoutMs?: number;
}

/** What recovery finds of a running VM's plumbing (see NetworkManager's reconcile). */
export interface IsolatedInspection {
  /** QEMU's process runs in a network namespace of its own. */
  readonly namespace: boolean;
  /** The host end of the veth exists in the daemon's namespace. */
  readonly hostLink: boolean;
  /** tap0, veth0 and br0 exist in QEMU's namespace. */
  readonly devices: boolean;
  /** Each in-namespace table: as this attachment would write it now, written from other input, or absent. */
  readonly guard: "current" | "stale" | "missing";
  readonly policy: "current" | "stale" | "missing";
}

export interface IsolatedAttachment extends NetworkAttachment {
  readonly mode: "isolated";
  /** Rewrites the namespace's policy table in one transaction; new connections are judged by the new policy. */
  setPolicy(pid: number, policy: EgressPolicy, denyOutgoing: boolean): Promise<void>;
  inspect(pid: number): Promise<IsolatedInspection>;
  /** Writes both in-namespace tables again (recovery, after inspect() found one stale or missing). */
  restoreRules(pid: number): Promise<void>;
}

const IFNAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$/;
const ALIAS = /^[A-Za-z0-9:._-]{1,128}$/;

const defaultRunner: CommandRunner = (file, args, input, signal) => run(file, args, { input, signal });

function program(name: string): string {
  return findProgram(name) ?? name;
}

/** The identity of a process's network namespace (device and inode of /proc/PID/ns/net), or undefined. */
async function namespaceOf(pid: number | "self"): Promise<string | undefined> {
  try {
    const info = await stat(`/proc/${pid}/ns/net`);
    return `${info.dev}:${info.ino}`;
  } catch {
    return undefined;
  }
}

/** The devices of a process's network namespace (`/proc/PID/net/dev`: no spawn, and right for any namespace). */
async function devicesOf(pid: number | "self"): Promise<Set<string> | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/net/dev`, "utf8");
    return new Set(
      text
        .split("\n")
        .slice(2)
        .map((line) => line.split(":")[0]!.trim())
        .filter(Boolean),
    );
  } catch {
    return undefined;
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    const abort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", abort, { once: true });
  });
}

export function createIsolatedAttachment(input: IsolatedAttachmentInput, deps: IsolatedDeps = {}): IsolatedAttachment {
  if (!IFNAME.test(input.hostIfname) || input.hostIfname === VM_VETH) {
    throw new Error(`Cannot use "${input.hostIfname}" as a veth name: 1 to 15 letters, digits, "_", "." or "-", not "${VM_VETH}"`);
  }
  if (input.alias !== undefined && !ALIAS.test(input.alias)) throw new Error(`Cannot use "${input.alias}" as an interface alias: letters, digits, ":", ".", "_" or "-"`);
  const runCommand = deps.run ?? defaultRunner;
  const readyTimeoutMs = deps.readyTimeoutMs ?? 60_000;
  const host = input.hostIfname;
  const guest: GuestNetwork = {
    address: formatIpv4(input.block.address),
    prefixLength: 30,
    gateway: formatIpv4(input.block.gateway),
    dns: [...input.dns],
    mac: input.mac.toLowerCase(),
  };
  const netdev: NetdevSpec = { kind: "tap", ifname: VM_TAP, vhost: input.vhost };
  let rules: VmRulesInput = {
    block: input.block,
    mac: guest.mac,
    dns: input.dns,
    policy: input.policy,
    denyOutgoing: input.denyOutgoing,
    guestPorts: input.portMap.map((p) => p.guest),
  };
  /** The namespace plumb() found (device:inode): later calls refuse a pid that no longer holds it. */
  let plumbed: { pid: number; ns: string } | undefined;
  const expectedNs = (pid: number): string | undefined => (plumbed?.pid === pid ? plumbed.ns : undefined);

  /** Runs `file args` inside QEMU's namespace, refusing when the pid no longer holds a namespace of its own. */
  async function inNamespace(pid: number, expected: string | undefined, file: string, args: readonly string[], text: string, signal?: AbortSignal): Promise<string> {
    const ns = await namespaceOf(pid);
    const own = await namespaceOf("self");
    if (ns === undefined) throw new Error(`Cannot reach the network namespace of QEMU (pid ${pid}): the process is gone`);
    if (ns === own) throw new Error(`Cannot plumb QEMU (pid ${pid}) in isolated mode: it shares the daemon's network namespace (not started under unshare --net)`);
    if (expected !== undefined && ns !== expected) throw new Error(`Cannot reach the network namespace of QEMU (pid ${pid}): the pid now belongs to another process`);
    return runCommand(program("nsenter"), [`--net=/proc/${pid}/ns/net`, "--", program(file), ...args], text, signal);
  }

  /** QEMU is past `unshare` (its own namespace) and has made its TAP; its vCPUs are still stopped. */
  async function waitUntilReady(pid: number, signal?: AbortSignal): Promise<string> {
    const own = await namespaceOf("self");
    const deadline = Date.now() + readyTimeoutMs;
    for (;;) {
      const ns = await namespaceOf(pid);
      if (ns === undefined) throw new Error(`Cannot plumb QEMU (pid ${pid}): the process exited before its TAP was made`);
      if (ns !== own && (await devicesOf(pid))?.has(VM_TAP)) return ns;
      if (Date.now() > deadline) {
        throw new Error(`Cannot plumb QEMU (pid ${pid}): no "${VM_TAP}" in its own network namespace after ${readyTimeoutMs} ms`);
      }
      await sleep(20, signal);
    }
  }

  async function deleteHostLink(): Promise<void> {
    if (!(await devicesOf("self"))?.has(host)) return;
    await runCommand(program("ip"), ["link", "del", "dev", host], "").catch(async (err: unknown) => {
      // Gone in the meantime (QEMU exited and took the peer along): nothing left to undo.
      if ((await devicesOf("self"))?.has(host)) throw err;
    });
  }

  /**
   * The host end of a VM that just died lingers until the kernel has torn its namespace down (asynchronously),
   * and device ids are reused at once: give a dying namespace a moment; a live link of that name is refused.
   */
  async function waitForNameFree(pid: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + 5_000;
    while ((await devicesOf("self"))?.has(host)) {
      if (Date.now() > deadline) throw new Error(`Cannot plumb QEMU (pid ${pid}): a link "${host}" already exists on the host`);
      await sleep(20, signal);
    }
  }

  /** Undo inside the namespace, but only while it is still QEMU's: once QEMU is gone, so is what it held. */
  async function undoInNamespace(pid: number, ns: string, file: string, args: readonly string[], text: string): Promise<void> {
    if ((await namespaceOf(pid)) !== ns) return;
    await inNamespace(pid, ns, file, args, text);
  }

  async function plumb(pid: number, revert: Reverter, signal?: AbortSignal): Promise<void> {
    const ns = await waitUntilReady(pid, signal);
    plumbed = { pid, ns };
    await waitForNameFree(pid, signal);

    // 1. The veth, host end first: the gateway address gives the host a connected route to the VM and nothing
    // else. No IPv6 link-local address on it (addrgenmode none): the VM gets no IPv6 at all.
    revert.add(`the veth "${host}"`, deleteHostLink);
    const hostScript = [
      `link add ${host} type veth peer name ${VM_VETH} netns ${pid}`,
      `link set dev ${host} addrgenmode none`,
      ...(input.alias === undefined ? [] : [`link set dev ${host} alias ${input.alias}`]),
      `addr add ${guest.gateway}/30 dev ${host}`,
      `link set dev ${host} up`,
      "",
    ].join("\n");
    await runCommand(program("ip"), ["-batch", "-"], hostScript, signal);
    // A DNS relay DNATs the gateway's port 53 to a loopback resolver: valid only with route_localnet on the link.
    await writeFile(`/proc/sys/net/ipv4/conf/${host}/route_localnet`, "1");
    signal?.throwIfAborted();

    // 2. The rules before the bridge: no frame crosses br0 before the guard and the policy are in place.
    revert.add("the namespace's nft tables", () =>
      undoInNamespace(pid, ns, "nft", ["-f", "-"], `delete table bridge ${VM_TABLE}\ndelete table inet ${VM_TABLE}\n`).catch(() => undefined),
    );
    await inNamespace(pid, ns, "nft", ["-f", "-"], vmRulesScript(rules), signal);
    signal?.throwIfAborted();

    // 3. The namespace bridge. nf_call_iptables sends bridged IPv4 through the inet forward hook (the policy);
    // forward_delay 0 lets the ports forward at once (no STP here).
    revert.add(`the namespace bridge "${VM_BRIDGE}"`, () => undoInNamespace(pid, ns, "ip", ["link", "del", "dev", VM_BRIDGE], "").catch(() => undefined));
    const namespaceScript = [
      "link set dev lo up",
      `link add ${VM_BRIDGE} type bridge nf_call_iptables 1 forward_delay 0`,
      ...[VM_BRIDGE, VM_VETH, VM_TAP].map((dev) => `link set dev ${dev} addrgenmode none`),
      `link set dev ${VM_VETH} master ${VM_BRIDGE} up`,
      `link set dev ${VM_TAP} master ${VM_BRIDGE} up`,
      `link set dev ${VM_BRIDGE} up`,
      "",
    ].join("\n");
    await inNamespace(pid, ns, "ip", ["-batch", "-"], namespaceScript, signal);
  }

  async function setPolicy(pid: number, policy: EgressPolicy, denyOutgoing: boolean): Promise<void> {
    const next = { ...rules, policy, denyOutgoing };
    await inNamespace(pid, expectedNs(pid), "nft", ["-f", "-"], policyTable(next));
    rules = next;
  }

  async function inspect(pid: number): Promise<IsolatedInspection> {
    const ns = await namespaceOf(pid);
    const known = expectedNs(pid);
    const namespace = ns !== undefined && ns !== (await namespaceOf("self")) && (known === undefined || known === ns);
    const hostLink = (await devicesOf("self"))?.has(host) ?? false;
    const inside = namespace ? await devicesOf(pid) : undefined;
    const devices = inside !== undefined && [VM_TAP, VM_VETH, VM_BRIDGE].every((d) => inside.has(d));
    if (!namespace) return { namespace, hostLink, devices, guard: "missing", policy: "missing" };
    const listing = await inNamespace(pid, ns, "nft", ["list", "ruleset"], "");
    const expected = expectedDigests(rules);
    const state = (family: "bridge" | "inet", digest: string): IsolatedInspection["guard"] => {
      const start = listing.indexOf(`table ${family} ${VM_TABLE} {`);
      if (start < 0) return "missing";
      const next = listing.indexOf("\ntable ", start + 1);
      const found = digestInListing(listing.slice(start, next < 0 ? undefined : next));
      return found === digest ? "current" : "stale";
    };
    return { namespace, hostLink, devices, guard: state("bridge", expected.bridge), policy: state("inet", expected.inet) };
  }

  async function restoreRules(pid: number): Promise<void> {
    await inNamespace(pid, expectedNs(pid), "nft", ["-f", "-"], guardTable(rules) + policyTable(rules));
  }

  return {
    mode: "isolated",
    guest,
    netdev,
    launchPrefix: ISOLATED_LAUNCH_PREFIX,
    needsPlumbing: true,
    plumb,
    setPolicy,
    inspect,
    restoreRules,
    view: (): NicView => ({
      mode: "isolated",
      mac: guest.mac,
      address: guest.address,
      prefix_length: guest.prefixLength,
      gateway: guest.gateway,
      bridge: null,
      target_dev: host,
    }),
  };
}
