// Host links as `ip` sees them and the `ip -batch` scripts that change them (bridges, TAP ports, sysctls),
// pure text beside a small runner. Every change of one step goes through one `ip -batch -` process, so a
// plumb costs one spawn; `netnsPid` runs it inside a process's network namespace through nsenter.
import { writeFile } from "node:fs/promises";
import { run } from "../util/run.ts";

export interface HostLink {
  readonly name: string;
  readonly alias: string | undefined;
  /** `bridge`, `tun`, `veth`…; undefined for plain devices. */
  readonly kind: string | undefined;
  readonly master: string | undefined;
  /** IPv4 addresses with their prefix ("192.168.137.1/24"). */
  readonly addresses: readonly { readonly address: string; readonly prefixLength: number }[];
}

interface IpJsonLink {
  ifname: string;
  ifalias?: string;
  master?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

/** Reads `ip -j -d addr show` output. */
export function parseLinks(json: string): HostLink[] {
  const links = JSON.parse(json || "[]") as IpJsonLink[];
  return links.map((l) => ({
    name: l.ifname,
    alias: l.ifalias || undefined,
    kind: l.linkinfo?.info_kind,
    master: l.master,
    addresses: (l.addr_info ?? []).filter((a) => a.family === "inet").map((a) => ({ address: a.local, prefixLength: a.prefixlen })),
  }));
}

function quote(text: string): string {
  return `"${text.replace(/["\\]/g, "")}"`;
}

/** Makes (or, `adopt`, re-asserts) a group's bridge: alias, gateway address, bridge netfilter, up. */
export function bridgeBatch(input: { bridge: string; alias: string; gateway: string; adopt: boolean }): string {
  return [
    ...(input.adopt ? [] : [`link add ${input.bridge} type bridge`]),
    `link set dev ${input.bridge} alias ${quote(input.alias)}`,
    `address replace ${input.gateway} dev ${input.bridge}`,
    `link set dev ${input.bridge} type bridge nf_call_iptables 1`,
    `link set dev ${input.bridge} up`,
    "",
  ].join("\n");
}

/** Puts a TAP QEMU made on its group's bridge, marks it ours and brings it up (idempotent: recovery reruns it). */
export function enslaveBatch(input: { tap: string; bridge: string; alias: string }): string {
  return [`link set dev ${input.tap} master ${input.bridge}`, `link set dev ${input.tap} alias ${quote(input.alias)}`, `link set dev ${input.tap} up`, ""].join("\n");
}

export function deleteLinksBatch(names: readonly string[]): string {
  return names.map((n) => `link delete dev ${n}\n`).join("");
}

/**
 * What the network code asks of the host: `ip` batches, reading links, writing sysctls. An interface so the
 * contract tests can count and fail steps; HostCommands runs the real programs.
 */
export interface LinkRunner {
  ipBatch(script: string, options?: { netnsPid?: number; force?: boolean }): Promise<void>;
  links(): Promise<HostLink[]>;
  sysctl(path: string, value: string): Promise<void>;
  /** Runs nft with `args` (and `input` on stdin); returns its stdout. */
  nft(args: readonly string[], input?: string): Promise<string>;
}

/**
 * The real programs, in the daemon's own network namespace, or (`netns`, contract tests) in the namespace at
 * that path (`/run/netns/NAME`) through nsenter, sysctls included: /proc/sys/net is per namespace.
 */
export class HostCommands implements LinkRunner {
  constructor(private readonly netns?: string) {}

  private exec(file: string, args: readonly string[], input?: string): Promise<string> {
    if (this.netns === undefined) return run(file, args, { input });
    return run("nsenter", [`--net=${this.netns}`, "--", file, ...args], { input });
  }

  async ipBatch(script: string, options: { netnsPid?: number; force?: boolean } = {}): Promise<void> {
    const args = [...(options.force ? ["-force"] : []), "-batch", "-"];
    if (options.netnsPid === undefined) await this.exec("ip", args, script);
    else await run("nsenter", [`--net=/proc/${options.netnsPid}/ns/net`, "--", "ip", ...args], { input: script });
  }

  async links(): Promise<HostLink[]> {
    return parseLinks(await this.exec("ip", ["-j", "-d", "address", "show"]));
  }

  /** `path` under /proc/sys ("net/ipv4/ip_forward"). */
  async sysctl(path: string, value: string): Promise<void> {
    if (this.netns === undefined) await writeFile(`/proc/sys/${path}`, `${value}\n`);
    else await this.exec("sh", ["-c", `echo ${value} > /proc/sys/${path}`]);
  }

  nft(args: readonly string[], input?: string): Promise<string> {
    return this.exec("nft", args, input);
  }
}
