// Networking per mode, side by side with user mode (issue 14's benchmark), in a namespace it makes like the
// tests (test/helpers/netns.ts), with an outside peer namespace on 198.18.0.0/30:
//   throughput: 64 MiB over one TCP connection, VM -> outside peer (each mode's NAT), host -> VM (the daemon's
//               namespace dialing the VM's address; bridge mode only: user mode has no address to dial and
//               isolated VMs take no inbound connection but mapped ports), VM -> VM (bridge only: user-mode
//               VMs cannot reach each other, isolated ones must not).
//   round trip: 1,000 one-byte TCP ping-pongs over one connection on the same paths, median and p99.
//   create: a template clone created and its agent answering, median of 10, and what each mode adds to it.
// Under TCG the numbers are CPU-bound: compare modes with each other, not with other machines.
//   node --import tsx bench/network.ts   (bench/main.ts runs the same through runNetworkBench)
import { pathToFileURL } from "node:url";
import type { CorralClient } from "../src/sdk/index.ts";
import { TestDaemon } from "../test/helpers/daemon-process.ts";
import { PeerNetns, templateReady, TestNetns } from "../test/helpers/netns.ts";
import { ms, percentile, ratio, table } from "./stats.ts";

const MIB = Number(process.env.CORRAL_BENCH_NET_MIB ?? 64);
const ROUND_TRIPS = Number(process.env.CORRAL_BENCH_NET_RTTS ?? 1000);
const CREATES = Number(process.env.CORRAL_BENCH_NET_CREATES ?? 10);
const PORT = 5201;
const MODES = ["user", "bridge", "isolated"] as const;
type Mode = (typeof MODES)[number];

/** CORRAL_BENCH_NET_MODES=user,bridge narrows the run (user mode is always measured: the ratios need it). */
const WANTED: readonly Mode[] = MODES.filter((m) => m === "user" || (process.env.CORRAL_BENCH_NET_MODES ?? MODES.join(",")).split(",").includes(m));

const GROUP_NETWORK: Record<Mode, string> = {
  user: "",
  bridge: "      network:\n        gateway: 10.160.0.1/24\n",
  isolated: '      network:\n        mode: isolated\n        range: 169.254.160.0/22\n        allow: ["0.0.0.0/0"]\n',
};

const CONFIG = `config:
  host_groups:
${WANTED.map((mode) => `    - name: ${mode}\n      image: base\n      vcpu: 1\n      ram_mb: 512\n${GROUP_NETWORK[mode]}`).join("")}`;

/**
 * One server for both measures: a connection's first line says what it wants. "SINK N": read N bytes, then
 * answer "done". "ECHO": send back every byte.
 */
const SERVER = `
const port = Number(process.argv.at(-1));
require("net").createServer((s) => {
  s.on("error", () => {});
  let head = Buffer.alloc(0), mode, left = 0;
  s.on("data", (chunk) => {
    if (mode === "echo") return void s.write(chunk);
    if (mode === "sink") { left -= chunk.length; if (left <= 0) s.end("done\\n"); return; }
    head = Buffer.concat([head, chunk]);
    const nl = head.indexOf(10);
    if (nl < 0) return;
    const line = head.subarray(0, nl).toString(), rest = head.subarray(nl + 1);
    if (line.startsWith("SINK ")) { mode = "sink"; left = Number(line.slice(5)) - rest.length; if (left <= 0) s.end("done\\n"); }
    else { mode = "echo"; if (rest.length) s.write(rest); }
  });
}).listen(port, "0.0.0.0", () => console.log("listening"));
`;

/** `send HOST PORT BYTES` prints {"ms": N} (connect to "done"); `rtt HOST PORT N` prints {"samples": [...]}. */
const CLIENT = `
const [what, host, port, count] = process.argv.slice(-4);
const s = require("net").connect({ host, port: Number(port) });
s.setNoDelay(true);
const out = (v) => { console.log(JSON.stringify(v)); process.exit(0); };
s.on("error", (e) => out({ error: e.code }));
if (what === "send") {
  const total = Number(count), block = Buffer.alloc(65536, 7);
  let started, sent = 0;
  s.on("connect", () => {
    started = performance.now();
    s.write("SINK " + total + "\\n");
    const pump = () => { while (sent < total) { const n = Math.min(block.length, total - sent); sent += n; if (!s.write(n === block.length ? block : block.subarray(0, n))) return void s.once("drain", pump); } };
    pump();
  });
  s.on("data", () => out({ ms: performance.now() - started }));
} else {
  const n = Number(count), samples = [];
  let t;
  s.on("connect", () => { s.write("ECHO\\n"); t = performance.now(); s.write("x"); });
  s.on("data", (d) => {
    for (let i = 0; i < d.length; i++) {
      samples.push(performance.now() - t);
      if (samples.length >= n) out({ samples });
    }
    t = performance.now();
    s.write("x");
  });
}
`;

interface PathResult {
  mibPerSecond: number | undefined;
  rttMs: number[];
}

export interface NetworkBenchResult {
  paths: Record<string, Partial<Record<Mode, PathResult | string>>>;
  create: Record<Mode, number[]>;
  tables: string[];
}

function parseJson<T>(text: string, what: string): T {
  const line = text.trim().split("\n").pop() ?? "";
  const parsed = JSON.parse(line) as T & { error?: string };
  if (parsed.error) throw new Error(`${what}: ${parsed.error}`);
  return parsed;
}

async function guestClient(client: CorralClient, hostname: string, args: string[]): Promise<string> {
  const result = await client.execBuffered(hostname, { cmd: "node", args: ["-e", CLIENT, ...args] });
  if (result.exit_code !== 0) throw new Error(`the client in ${hostname} failed: ${result.stderr.slice(-300)}`);
  return result.stdout;
}

async function guestServer(client: CorralClient, hostname: string): Promise<void> {
  await client.bg.exec(hostname, { cmd: "node", args: ["-e", SERVER, String(PORT)] });
  for (let i = 0; i < 100; i++) {
    const probe = await client.execBuffered(hostname, {
      cmd: "node",
      args: ["-e", `require("net").connect(${PORT}, "127.0.0.1").on("connect", () => process.exit(0)).on("error", () => process.exit(1))`],
    });
    if (probe.exit_code === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`The benchmark server in ${hostname} did not start`);
}

/** Throughput and round trips of one path, given how to run the client there. */
async function measure(runClient: (args: string[]) => Promise<string>, host: string, what: string): Promise<PathResult> {
  const bytes = MIB * 1024 * 1024;
  const sent = parseJson<{ ms: number }>(await runClient(["send", host, String(PORT), String(bytes)]), what);
  const rtt = parseJson<{ samples: number[] }>(await runClient(["rtt", host, String(PORT), String(ROUND_TRIPS)]), what);
  return { mibPerSecond: MIB / (sent.ms / 1000), rttMs: rtt.samples };
}

export async function runNetworkBench(options: { log: (line: string) => void }): Promise<NetworkBenchResult | undefined> {
  const log = options.log;
  if (process.getuid?.() !== 0) {
    log("network bench: skipped, it needs root (network namespaces, bridges, TAPs)");
    return undefined;
  }
  const ns = await TestNetns.create("bench");
  try {
    const peer = await PeerNetns.create(ns);
    const peerServer = peer.ns.spawn(process.execPath, ["-e", SERVER, String(PORT)]);
    await new Promise<void>((resolve, reject) => {
      peerServer.stdout?.on("data", (d: Buffer) => String(d).includes("listening") && resolve());
      peerServer.once("exit", (code) => reject(new Error(`the peer's server exited (${code})`)));
    });
    const daemon = await TestDaemon.create(CONFIG, { netns: ns });
    await daemon.start();
    const client = daemon.client;
    // A mode the daemon cannot set up here (no br_netfilter, no nft, ...) is reported, not measured.
    const groups = (await daemon.request("GET", "/hostgroup")).body as { name: string; network?: { state?: string; reason?: string | null } }[];
    const skipped = new Map<Mode, string>();
    for (const mode of MODES) {
      if (!WANTED.includes(mode)) skipped.set(mode, "not asked for");
      else if (groups.find((g) => g.name === mode)?.network?.state === "unavailable") skipped.set(mode, "unavailable here");
    }
    for (const [mode, why] of skipped) log(`  network ${mode}: skipped, ${why}`);
    const measured = MODES.filter((m) => !skipped.has(m));
    for (const mode of measured) await templateReady(daemon, mode);

    const create: Record<Mode, number[]> = { user: [], bridge: [], isolated: [] };
    for (let round = 0; round < CREATES; round++) {
      for (const mode of measured) {
        const started = performance.now();
        const vm = await client.createNode(mode, {}, { wait: "agent", timeout: "300s" });
        create[mode].push(performance.now() - started);
        await client.deleteNode(mode, vm.hostname);
      }
      log(`  network create ${round + 1}/${CREATES}: ${measured.map((m) => `${m} ${ms(create[m].at(-1) as number)}`).join(", ")}`);
    }

    const outside: Partial<Record<Mode, PathResult | string>> = {};
    const hostToVm: Partial<Record<Mode, PathResult | string>> = {};
    const vmToVm: Partial<Record<Mode, PathResult | string>> = {};
    const paths: NetworkBenchResult["paths"] = { "VM -> outside (NAT)": outside, "host -> VM": hostToVm, "VM -> VM": vmToVm };
    const vms: Partial<Record<Mode, { hostname: string; ip: string }[]>> = {};
    for (const mode of MODES) {
      const why = skipped.get(mode);
      if (why) {
        for (const path of [outside, hostToVm, vmToVm]) path[mode] = `n/a (${why})`;
        continue;
      }
      const pair = [];
      for (let i = 0; i < (mode === "bridge" ? 2 : 1); i++) {
        const vm = await client.createNode(mode, {}, { wait: "agent", timeout: "300s" });
        pair.push({ hostname: vm.hostname, ip: vm.ip });
      }
      vms[mode] = pair;
      const first = pair[0] as { hostname: string; ip: string };
      log(`  network ${mode}: VM -> outside`);
      outside[mode] = await measure((args) => guestClient(client, first.hostname, args), peer.address, `${mode} VM -> outside`);
    }
    hostToVm.user = "n/a (no address)";
    vmToVm.user = "n/a (no VM-VM)";
    if (!skipped.has("isolated")) {
      hostToVm.isolated = "n/a (mapped only)";
      vmToVm.isolated = "n/a (by design)";
    }
    if (vms.bridge) {
      const [a, b] = vms.bridge as [{ hostname: string; ip: string }, { hostname: string; ip: string }];
      await guestServer(client, b.hostname);
      log("  network bridge: host -> VM, VM -> VM");
      hostToVm.bridge = await measure((args) => ns.run(process.execPath, ["-e", CLIENT, ...args]), b.ip, "host -> bridge VM");
      vmToVm.bridge = await measure((args) => guestClient(client, a.hostname, args), b.ip, "bridge VM -> VM");
    }
    await daemon.dispose();

    const user = outside.user as PathResult;
    const cell = (value: PathResult | string | undefined, pick: (r: PathResult) => number, format: (n: number) => string): string =>
      value === undefined ? "-" : typeof value === "string" ? value : format(pick(value));
    const rows: string[][] = [];
    for (const [path, byMode] of Object.entries(paths)) {
      rows.push([
        `${path}: MiB/s (${MIB} MiB)`,
        ...MODES.map((m) =>
          cell(
            byMode[m],
            (r) => r.mibPerSecond ?? Number.NaN,
            (n) => n.toFixed(1),
          ),
        ),
      ]);
      rows.push([`${path}: round trip p50`, ...MODES.map((m) => cell(byMode[m], (r) => percentile(r.rttMs, 50), ms))]);
      rows.push([`${path}: round trip p99`, ...MODES.map((m) => cell(byMode[m], (r) => percentile(r.rttMs, 99), ms))]);
    }
    const vsUser = (mode: Mode): string => {
      const value = outside[mode];
      return typeof value === "object" && value.mibPerSecond ? ratio(value.mibPerSecond, user.mibPerSecond ?? Number.NaN) : "-";
    };
    rows.push(["VM -> outside throughput / user mode's", ...MODES.map(vsUser)]);
    const median = (mode: Mode): number => percentile(create[mode], 50);
    rows.push([`template clone -> agent, p50 of ${CREATES}`, ...MODES.map((m) => (skipped.has(m) ? "n/a" : ms(median(m))))]);
    rows.push(["  added to user mode's", ...MODES.map((m) => (m === "user" || skipped.has(m) ? "-" : ms(median(m) - median("user"))))]);
    rows.push(["  ratio to user mode's", ...MODES.map((m) => ratio(median(m), median("user")))]);
    return { paths, create, tables: [table(["networking, 1 vCPU / 512 MiB", ...MODES], rows)] };
  } finally {
    await ns.dispose();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const result = await runNetworkBench({ log: (line) => process.stderr.write(`${line}\n`) });
  if (result) process.stdout.write(`\n${result.tables.join("\n\n")}\n`);
}
