// The guest's address, default route and resolvers from its identity (bridge and isolated modes): a clone
// restored from a template starts with no address (the template had none) and must take its own before the
// host raises its link. Applied on every connect, so it is idempotent: an interface that already has exactly
// the address keeps it (and its connections). Through the agent's native addon (rtnetlink, no process), else
// the runtime's busybox `ip`, present in every image: up to five runs of it, each a fork of the agent, cost a
// bridge-mode clone hundreds of milliseconds under emulation.
import { execFile } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import type { GuestIdentity } from "../protocol/agent.ts";
import { RUNTIME_BUSYBOX } from "../image/guest-runtime-scripts.ts";
import { guestNative } from "./native.ts";

export type GuestNetworkIdentity = NonNullable<GuestIdentity["network"]>;

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** The host is trusted less than nothing here: every field reaches a command line. */
export function checkNetwork(network: GuestNetworkIdentity): void {
  if (!IPV4.test(network.address)) throw new Error(`Invalid address ${JSON.stringify(network.address)}`);
  if (!Number.isInteger(network.prefix_length) || network.prefix_length < 1 || network.prefix_length > 32)
    throw new Error(`Invalid prefix length ${JSON.stringify(network.prefix_length)}`);
  if (network.gateway !== "" && !IPV4.test(network.gateway)) throw new Error(`Invalid gateway ${JSON.stringify(network.gateway)}`);
  if (!Array.isArray(network.dns) || network.dns.length > 8) throw new Error("Invalid DNS list");
  for (const server of network.dns) if (!IPV4.test(server)) throw new Error(`Invalid DNS server ${JSON.stringify(server)}`);
}

/** The IPv4 addresses (`A/P`) `ip -o -4 addr show dev IF` lists. */
export function parseAddresses(output: string): string[] {
  return [...output.matchAll(/\binet (\d+\.\d+\.\d+\.\d+\/\d+)/g)].map((m) => m[1] as string);
}

/** The `ip` commands that make `device` hold exactly the wanted address, up, with the default route. */
export function networkCommands(device: string, current: readonly string[], network: GuestNetworkIdentity): string[][] {
  const wanted = `${network.address}/${network.prefix_length}`;
  const commands: string[][] = [];
  if (current.length !== 1 || current[0] !== wanted) {
    commands.push(["addr", "flush", "dev", device], ["addr", "add", wanted, "dev", device]);
  }
  commands.push(["link", "set", device, "up"]);
  if (network.gateway) commands.push(["route", "replace", "default", "via", network.gateway, "dev", device]);
  return commands;
}

export function resolvConf(dns: readonly string[]): string {
  return dns.map((server) => `nameserver ${server}\n`).join("");
}

function ip(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(RUNTIME_BUSYBOX, ["ip", ...args], { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`ip ${args.join(" ")}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** A checked dotted quad as its four bytes. */
export function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split(".").map(Number));
}

/** Applies the network part of an identity to `device` (eth0). */
export async function applyNetwork(device: string, network: GuestNetworkIdentity, resolvPath = "/etc/resolv.conf"): Promise<void> {
  checkNetwork(network);
  // A gratuitous ARP when the carrier comes up (the host raises the link after this): peers that knew the
  // address under another MAC (an earlier VM's) learn the new one at once.
  try {
    writeFileSync(`/proc/sys/net/ipv4/conf/${device}/arp_notify`, "1");
  } catch {
    // no such device: the address step below says so
  }
  const native = guestNative();
  if (native?.setIpv4) {
    native.setIpv4(device, ipv4Bytes(network.address), network.prefix_length, network.gateway ? ipv4Bytes(network.gateway) : null);
  } else {
    const current = parseAddresses(await ip(["-o", "-4", "addr", "show", "dev", device]));
    for (const command of networkCommands(device, current, network)) await ip(command);
  }
  if (network.dns.length === 0) return;
  const text = resolvConf(network.dns);
  let existing: string | undefined;
  try {
    existing = readFileSync(resolvPath, "utf8");
  } catch {
    existing = undefined;
  }
  if (existing === text) return;
  // It may be a symlink into /run (systemd-resolved): a plain file replaces it, as the boot script does.
  rmSync(resolvPath, { force: true });
  writeFileSync(resolvPath, text, { mode: 0o644 });
}
