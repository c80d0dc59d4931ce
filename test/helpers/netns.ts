// Network namespaces for the tests that create devices or send traffic (issue 14): the daemon runs inside a
// namespace the test makes (`TestNetns`), an "outside" peer namespace joined to it by a veth on the
// benchmarking range 198.18.0.0/15 runs listeners (`PeerNetns`), and nothing is sent to any address outside
// the two. Programs enter a namespace with `nsenter --net=/run/netns/NAME`, never `ip netns exec`, which runs
// in a mount namespace of its own where namespaces made inside are invisible to everything else (plan §1.4).
// Teardown deletes the namespaces whatever happens, after killing every process the test left in them.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readlinkSync, statSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { run, type RunOptions } from "../../src/util/run.ts";
import type { VmNetworkDescription } from "../../src/protocol/net.ts";
import type { CorralClient } from "../../src/sdk/index.ts";
import type { TestDaemon } from "./daemon-process.ts";
import { parseProbe, REACH_PROBE, type ProbeResult } from "./reach.ts";

/** Every namespace the tests make starts with this (a leak check greps for it). */
export const TEST_NETNS_PREFIX = "corral-t-";

export interface LinkInfo {
  ifname: string;
  link_type?: string;
  ifalias?: string;
  master?: string;
  address?: string;
  /** `veth`, `tun`, `bridge`, ... (from `ip -d`). */
  kind?: string;
}

/** Processes whose network namespace has this inode. */
function pidsInNamespace(inode: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/ns/net`) === `net:[${inode}]`) pids.push(Number(entry));
    } catch {
      // gone, or a kernel thread
    }
  }
  return pids;
}

/** Names of the network namespaces `ip netns` knows (the files in /run/netns). */
export function namedNamespaces(): string[] {
  try {
    return readdirSync("/run/netns");
  } catch {
    return [];
  }
}

/** How many distinct network namespaces processes hold (a leak check: back to its baseline after a test). */
export function liveNamespaceCount(): number {
  const seen = new Set<string>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      seen.add(readlinkSync(`/proc/${entry}/ns/net`));
    } catch {
      // gone
    }
  }
  return seen.size;
}

export class TestNetns {
  private readonly children = new Set<ChildProcess>();
  private readonly cleanups: (() => Promise<void>)[] = [];
  private disposed = false;

  private constructor(
    readonly name: string,
    /** The namespace's inode, as /proc/PID/ns/net names it. */
    readonly inode: number,
  ) {}

  /** `ip netns add corral-t-<id>` with `lo` up. `label` is a short word between the prefix and the id. */
  static async create(label = ""): Promise<TestNetns> {
    const name = `${TEST_NETNS_PREFIX}${label ? `${label}-` : ""}${randomBytes(3).toString("hex")}`;
    await run("ip", ["netns", "add", name]);
    const ns = new TestNetns(name, statSync(`/run/netns/${name}`).ino);
    try {
      await ns.run("ip", ["link", "set", "lo", "up"]);
    } catch (err) {
      await ns.dispose();
      throw err;
    }
    return ns;
  }

  get path(): string {
    return `/run/netns/${this.name}`;
  }

  /** The argv prefix that runs a program in this namespace. */
  get prefix(): string[] {
    return ["nsenter", `--net=${this.path}`, "--"];
  }

  /** Runs a program in this namespace to completion; its stdout, or a CommandError. */
  run(file: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
    return run("nsenter", [`--net=${this.path}`, "--", file, ...args], options);
  }

  /** Starts a program in this namespace; it is killed at dispose if it still runs. */
  spawn(file: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
    const child = spawn("nsenter", [`--net=${this.path}`, "--", file, ...args], { stdio: ["ignore", "pipe", "pipe"], env });
    this.children.add(child);
    child.once("exit", () => this.children.delete(child));
    return child;
  }

  /** Runs first at dispose, last registered first (e.g. the daemon living in this namespace). */
  onDispose(cleanup: () => Promise<void>): void {
    this.cleanups.push(cleanup);
  }

  /** The links in this namespace, with their kind (`ip -d -j link`). */
  async links(): Promise<LinkInfo[]> {
    const out = await this.run("ip", ["-d", "-j", "link", "show"]);
    const parsed = JSON.parse(out || "[]") as (LinkInfo & { linkinfo?: { info_kind?: string } })[];
    return parsed.map((l) => ({ ifname: l.ifname, link_type: l.link_type, ifalias: l.ifalias, master: l.master, address: l.address, kind: l.linkinfo?.info_kind }));
  }

  /** "family name" of every nftables table in this namespace. */
  async nftTables(): Promise<string[]> {
    const out = await this.run("nft", ["-j", "list", "tables"]);
    const parsed = JSON.parse(out) as { nftables: { table?: { family: string; name: string } }[] };
    return parsed.nftables.flatMap((item) => (item.table ? [`${item.table.family} ${item.table.name}`] : []));
  }

  /** One table as JSON objects (`nft -j list table FAMILY NAME`): chains, rules, sets and their elements. */
  async nftTable(family: string, name: string): Promise<Record<string, unknown>[]> {
    const out = await this.run("nft", ["-j", "list", "table", family, name]);
    return (JSON.parse(out) as { nftables: Record<string, unknown>[] }).nftables;
  }

  /** The whole ruleset as text (for failure messages). */
  ruleset(): Promise<string> {
    return this.run("nft", ["list", "ruleset"]);
  }

  /**
   * Whether `ping` from this namespace gets an answer from `address` (busybox's: the host may have no
   * iputils, and busybox-static is installed for the images; 3 echoes, then 5 more waiting longer).
   */
  async ping(address: string): Promise<boolean> {
    for (const args of [
      ["-c", "3", "-W", "5"],
      ["-c", "5", "-W", "10"],
    ]) {
      try {
        await this.run("busybox", ["ping", ...args, address]);
        return true;
      } catch {
        // no answer: try again, waiting longer
      }
    }
    return false;
  }

  /** QUICK_PROBE (below) from this namespace. */
  async probe(kind: "tcp" | "udp", host: string, port: number): Promise<ProbeResult> {
    return parseProbe(await this.run(process.execPath, ["-e", QUICK_PROBE, kind, host, String(port)]));
  }

  /** A TCP listener in this namespace that greets each connection with its name. */
  listen(name: string, address: string, port = 0): Promise<NsListener> {
    return NsListener.start(this, name, address, port);
  }

  /** Processes in this namespace now. */
  pids(): number[] {
    return pidsInNamespace(this.inode);
  }

  /**
   * Runs the registered clean-ups (a daemon in here stops and its QEMUs are killed), kills what the test
   * started in here and anything else still in the namespace, then deletes it. Never throws for a part that
   * is already gone; reports the first real failure after doing everything it can.
   */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    let failure: unknown;
    for (const cleanup of this.cleanups.reverse()) {
      try {
        await cleanup();
      } catch (err) {
        failure ??= err;
      }
    }
    for (const child of this.children) child.kill("SIGKILL");
    const deadline = Date.now() + 10_000;
    for (;;) {
      const left = existsSync(this.path) ? this.pids() : [];
      if (left.length === 0) break;
      for (const pid of left) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      if (Date.now() > deadline) {
        failure ??= new Error(`Processes stayed in namespace ${this.name}: ${left.join(", ")}`);
        break;
      }
      await sleep(50);
    }
    await run("ip", ["netns", "del", this.name]).catch((err: unknown) => {
      if (existsSync(this.path)) failure ??= err;
    });
    if (failure) throw failure;
  }
}

/** A greeting TCP listener (REACH_PROBE reads its name) in a namespace; counts the connections it got. */
export class NsListener {
  connections = 0;
  /** Source addresses of the connections, in order. */
  readonly peers: string[] = [];

  private constructor(
    private readonly child: ChildProcess,
    readonly name: string,
    readonly address: string,
    readonly port: number,
  ) {}

  static async start(ns: TestNetns, name: string, address: string, port: number): Promise<NsListener> {
    const script = `
const [address, port, name] = process.argv.slice(-3);
const server = require("net").createServer((s) => { console.log("conn " + s.remoteAddress); s.on("error", () => {}); s.end(name + "\\n"); });
server.listen({ host: address, port: Number(port), exclusive: true }, () => console.log("listening " + server.address().port));
`;
    const child = ns.spawn(process.execPath, ["-e", script, address, String(port), name]);
    return new Promise<NsListener>((resolve, reject) => {
      let output = "";
      let listener: NsListener | undefined;
      child.stdout?.on("data", (chunk: Buffer) => {
        output += chunk.toString();
        for (let newline = output.indexOf("\n"); newline >= 0; newline = output.indexOf("\n")) {
          const line = output.slice(0, newline);
          output = output.slice(newline + 1);
          const listening = /^listening (\d+)$/.exec(line);
          if (listening && !listener) {
            listener = new NsListener(child, name, address, Number(listening[1]));
            resolve(listener);
          } else if (line.startsWith("conn ") && listener) {
            listener.connections++;
            listener.peers.push(line.slice(5).replace(/^::ffff:/, ""));
          }
        }
      });
      let errors = "";
      child.stderr?.on("data", (chunk: Buffer) => (errors += chunk.toString()));
      child.once("exit", (code) => {
        if (!listener) reject(new Error(`The listener "${name}" on ${address}:${port} in ${ns.name} exited (${code}): ${errors}`));
      });
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.kill("SIGKILL");
    await exited;
  }
}

/**
 * The "outside": a namespace of its own joined to `inner` (the daemon's namespace) by a veth pair on a /30 of
 * 198.18.0.0/15 (RFC 2544). Both ends live in namespaces the test made, so the addresses are fixed; the
 * host's namespace gets nothing. Guests reach it through their daemon's NAT, as they would the internet.
 */
export class PeerNetns {
  /** The peer's address (listeners bind here). */
  static readonly ADDRESS = "198.18.0.2";
  /** The address of the daemon's namespace on the link (what the peer dials for DNAT'd ports). */
  static readonly INNER_ADDRESS = "198.18.0.1";

  private constructor(
    readonly ns: TestNetns,
    readonly inner: TestNetns,
  ) {}

  get address(): string {
    return PeerNetns.ADDRESS;
  }

  get innerAddress(): string {
    return PeerNetns.INNER_ADDRESS;
  }

  /** Makes the peer namespace and the link; deleted with `inner` (registered there) or by dispose. */
  static async create(inner: TestNetns): Promise<PeerNetns> {
    const ns = await TestNetns.create("peer");
    try {
      const id = ns.name.slice(-6);
      const [innerIf, peerIf] = [`cp${id}i`, `cp${id}p`];
      await run("ip", ["link", "add", innerIf, "netns", inner.name, "type", "veth", "peer", "name", peerIf, "netns", ns.name]);
      await inner.run("ip", ["addr", "add", `${PeerNetns.INNER_ADDRESS}/30`, "dev", innerIf]);
      await inner.run("ip", ["link", "set", innerIf, "up"]);
      await ns.run("ip", ["addr", "add", `${PeerNetns.ADDRESS}/30`, "dev", peerIf]);
      await ns.run("ip", ["link", "set", peerIf, "up"]);
      // Whatever VM subnet the daemon has, the peer answers through the daemon's namespace (which NATs
      // guests anyway; this matters only for traffic the daemon routes without NAT).
      await ns.run("ip", ["route", "add", "default", "via", PeerNetns.INNER_ADDRESS]);
    } catch (err) {
      await ns.dispose();
      throw err;
    }
    const peer = new PeerNetns(ns, inner);
    inner.onDispose(() => peer.dispose());
    return peer;
  }

  /** A listener on the peer's address, or on another of its addresses (see addAddress). */
  listen(name: string, port = 0, address = PeerNetns.ADDRESS): Promise<NsListener> {
    return this.ns.listen(name, address, port);
  }

  /** One more address of the peer (another "network" out there, e.g. one a policy drops), routed to it. */
  async addAddress(address: string): Promise<void> {
    await this.ns.run("ip", ["addr", "add", `${address}/32`, "dev", "lo"]);
    await this.inner.run("ip", ["route", "add", `${address}/32`, "via", PeerNetns.ADDRESS]);
  }

  dispose(): Promise<void> {
    return this.ns.dispose();
  }
}

/** What a guest runs through the daemon's exec API: exit code and output, for probes and `ip` queries. */
export async function guestRun(client: CorralClient, hostname: string, cmd: string, args: readonly string[]): Promise<{ exit_code: number; stdout: string; stderr: string }> {
  const result = await client.execBuffered(hostname, { cmd, args: [...args] });
  return { exit_code: result.exit_code, stdout: result.stdout, stderr: result.stderr };
}

/**
 * REACH_PROBE with a 4 s TCP deadline instead of 8: every peer here is one or two hops away inside this
 * machine, so an answer takes milliseconds, and a dropped SYN (the policy tests' common case) costs less.
 */
export const QUICK_PROBE = REACH_PROBE.replace("socket.setTimeout(8000,", "socket.setTimeout(4000,");
if (QUICK_PROBE === REACH_PROBE) throw new Error("REACH_PROBE changed: QUICK_PROBE no longer shortens its deadline");

/** QUICK_PROBE from inside a guest (its node). */
export async function guestProbe(client: CorralClient, hostname: string, kind: "tcp" | "udp", host: string, port: number): Promise<ProbeResult> {
  const result = await guestRun(client, hostname, "node", ["-e", QUICK_PROBE, kind, host, String(port)]);
  if (result.exit_code !== 0) return { outcome: "error", code: `exit ${result.exit_code}: ${result.stderr.slice(-200)}` };
  return parseProbe(result.stdout);
}

/**
 * Whether the guest's `ping` gets an answer from `address` (busybox ping: 3 echoes, then 5 more waiting
 * longer: a fresh bridge learns a new MAC with a delay, as Slicer's docs warn). A "no" takes about 15 s.
 */
export async function guestPing(client: CorralClient, hostname: string, address: string): Promise<boolean> {
  if ((await guestRun(client, hostname, "ping", ["-c", "3", "-W", "5", address])).exit_code === 0) return true;
  return (await guestRun(client, hostname, "ping", ["-c", "5", "-W", "10", address])).exit_code === 0;
}

/** eth0's IPv4 address with its prefix ("10.1.2.3/24") and MAC as the guest sees them. */
export async function guestInterface(client: CorralClient, hostname: string): Promise<{ address: string | undefined; mac: string }> {
  const addr = await guestRun(client, hostname, "ip", ["-4", "-o", "addr", "show", "dev", "eth0"]);
  const mac = await guestRun(client, hostname, "cat", ["/sys/class/net/eth0/address"]);
  return { address: /inet (\d+\.\d+\.\d+\.\d+\/\d+)/.exec(addr.stdout)?.[1], mac: mac.stdout.trim() };
}

/** Waits until the host group's template is ready (TAP-mode templates are built on a detached TAP). */
export async function templateReady(daemon: TestDaemon, group: string, timeoutMs = 420_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const template = (await daemon.client.templates()).find((t) => t.hostgroup === group);
    if (template?.state === "ready") return;
    if (template?.state === "failed") throw new Error(`The template of host group "${group}" failed: ${JSON.stringify(template)}\n${daemon.log.split("\n").slice(-30).join("\n")}`);
    if (Date.now() > deadline) throw new Error(`The template of host group "${group}" was not ready in time: ${JSON.stringify(template)}`);
    await sleep(500);
  }
}

/** GET /vm/HOST's `network` (Slicer's describe shape with Corral's fields beside). */
export async function describeNetwork(daemon: TestDaemon, hostname: string): Promise<VmNetworkDescription> {
  const answer = await daemon.request("GET", `/vm/${encodeURIComponent(hostname)}`);
  if (answer.status !== 200) throw new Error(`GET /vm/${hostname}: ${answer.status} ${answer.text}`);
  const network = (answer.body as { network?: VmNetworkDescription }).network;
  if (!network) throw new Error(`GET /vm/${hostname} has no network: ${answer.text}`);
  return network;
}

/** The daemon's own host table (`inet corral_net_<tag>`) in its namespace, if it made one. */
export async function netTableName(ns: TestNetns, family = "inet", prefix = "corral_net_"): Promise<string | undefined> {
  return (await ns.nftTables()).find((t) => t.startsWith(`${family} ${prefix}`))?.split(" ")[1];
}

/**
 * What a table holds, independent of rule handles and element order: its chains (with their rule count) and
 * the elements of each set or map. Two summaries are equal when the table says the same.
 */
export async function nftSummary(ns: TestNetns, family: string, name: string): Promise<{ chains: Record<string, number>; sets: Record<string, string[]> }> {
  const items = await ns.nftTable(family, name);
  const chains: Record<string, number> = {};
  const sets: Record<string, string[]> = {};
  for (const item of items) {
    const chain = item.chain as { name: string } | undefined;
    if (chain) chains[chain.name] ??= 0;
    const rule = item.rule as { chain: string } | undefined;
    if (rule) chains[rule.chain] = (chains[rule.chain] ?? 0) + 1;
    const set = (item.set ?? item.map) as { name: string; elem?: unknown[] } | undefined;
    if (set) sets[set.name] = (set.elem ?? []).map((e) => JSON.stringify(e)).sort();
  }
  return { chains, sets };
}
