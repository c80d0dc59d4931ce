// QEMU command lines, built by pure functions so tests can pin the exact text.
// Machine: `microvm` with virtio-mmio devices, direct kernel boot, no firmware, no PCI.
import { BOOT_ARGS } from "../../protocol/boot.ts";
import type { MachineNic, MachineSpec, PortForward as MachinePortForward, TapNic, UserNic } from "../machine.ts";

export type Accel = "kvm" | "tcg";

// QEMU renders the seam's NIC as it is: user mode (slirp), or a TAP with `vnet_hdr=on` always (a state saved on
// a TAP only loads on a TAP with it).
export type PortForward = MachinePortForward;
export type UserNetwork = UserNic;
export type TapNetwork = TapNic;
export type QemuNetwork = MachineNic;

/** What the guest is told about its network on the kernel command line (the image's boot script applies it). */
export interface BootNetwork {
  /** Address with prefix length, e.g. "192.168.137.2/24". */
  guestCidr: string;
  gateway: string;
  /** One server, or several (written comma-separated; the boot script writes each into /etc/resolv.conf). */
  dns: string | readonly string[];
}

/** The seam's spec with what only QEMU needs: the accelerator, its QMP socket and pid file. */
export interface QemuSpec extends MachineSpec {
  accel: Accel;
  /** Under KVM: "host" unless the probe found only QEMU's default model works. */
  kvmCpu?: "host" | "default";
  qmpSocket: string;
  pidFile: string;
}

const RAM_BACKEND_ID = "ram";

/** The virtio-serial port name the guest agent looks for (see AGENT_PORT_NAME). */
export const AGENT_PORT = "corral.agent";

export interface CmdlineInput {
  accel: Accel;
  hostname: string;
  network: BootNetwork | undefined;
  /** Under TCG, the guest's TSC rate (the host's; see host-tsc.ts). */
  tscKhz: number;
  /** The VM's disk is bigger than its image's filesystem (see BOOT_ARGS.growRootfs). */
  growRootfs?: boolean;
}

/**
 * The guest kernel command line. Under TCG the kernel often fails TSC calibration and hangs at boot;
 * giving it the TSC frequency and trusting it fixed that in every boot measured (DESIGN.md). The frequency
 * must be the host's, or the guest's clock drifts.
 */
export function kernelCmdline(input: CmdlineInput): string {
  const args = ["console=ttyS0", "reboot=k", "panic=-1", "pci=off", "quiet", "root=/dev/vda", "rw"];
  if (input.accel === "tcg") args.push(`tsc_early_khz=${input.tscKhz}`, "tsc=reliable");
  args.push(`${BOOT_ARGS.hostname}=${input.hostname}`);
  if (input.network) {
    args.push(`${BOOT_ARGS.ip}=${input.network.guestCidr}`, `${BOOT_ARGS.gateway}=${input.network.gateway}`, `${BOOT_ARGS.dns}=${[input.network.dns].flat().join(",")}`);
  }
  if (input.growRootfs) args.push(`${BOOT_ARGS.growRootfs}=1`);
  return args.join(" ");
}

function netdevUser(network: UserNetwork): string {
  const parts = ["user", "id=net0", `net=${networkOf(network.guestCidr)}`, `host=${network.gateway}`, `dns=${network.dns}`];
  if (network.denyOutgoing) parts.push("restrict=on");
  for (const f of network.forwards) parts.push(`hostfwd=tcp:${f.hostAddress}:${f.hostPort}-:${f.guestPort}`);
  return parts.join(",");
}

function netdevTap(network: TapNetwork): string {
  const parts = ["tap", "id=net0", `ifname=${escapeOption(network.ifname)}`, "script=no", "downscript=no", "vnet_hdr=on"];
  if (network.vhost) parts.push("vhost=on");
  return parts.join(",");
}

/** "10.0.2.15/24" -> "10.0.2.0/24" */
export function networkOf(cidr: string): string {
  const [address, prefixText] = cidr.split("/");
  const prefix = Number(prefixText);
  const octets = (address ?? "").split(".").map(Number);
  const value = octets.reduce((acc, o) => (acc << 8) | o, 0) >>> 0;
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const net = (value & mask) >>> 0;
  return `${[net >>> 24, (net >>> 16) & 255, (net >>> 8) & 255, net & 255].join(".")}/${prefix}`;
}

/** Commas in QEMU option values are escaped by doubling them. */
function escapeOption(value: string): string {
  return value.replaceAll(",", ",,");
}

export function buildQemuArgs(spec: QemuSpec): string[] {
  const machine = spec.accel === "tcg" ? "microvm,isa-serial=on,pit=on" : "microvm,isa-serial=on";
  const args = [
    "-M",
    spec.memoryFile ? `${machine},memory-backend=${RAM_BACKEND_ID}` : machine,
    // Under TCG: QEMU's default model plus ARAT (the APIC timer keeps running when idle). Without ARAT the
    // guest keeps a periodic 250 Hz tick (no one-shot timer without a broadcast device, which microvm lacks),
    // and an idle VM cost twice the host CPU. Richer models (max) would only add instructions to emulate.
    ...(spec.accel === "kvm" ? ["-accel", "kvm", ...(spec.kvmCpu === "default" ? [] : ["-cpu", "host"])] : ["-accel", "tcg,thread=multi", "-cpu", "qemu64,+arat"]),
    "-smp",
    String(spec.cpus),
    "-m",
    `${spec.memoryMiB}M`,
    "-nodefaults",
    "-no-user-config",
    "-display",
    "none",
    "-no-reboot",
    "-kernel",
    spec.kernel,
    "-initrd",
    spec.initrd,
    "-append",
    spec.cmdline,
    "-chardev",
    `file,id=serial0,path=${escapeOption(spec.serialLog)},append=on`,
    "-serial",
    "chardev:serial0",
    "-drive",
    `id=root,file=${escapeOption(spec.disk.path)},format=${spec.disk.format},if=none,cache=writeback,discard=unmap`,
    "-device",
    "virtio-blk-device,drive=root",
    "-device",
    "virtio-serial-device,max_ports=4",
    "-chardev",
    `socket,id=agent,path=${escapeOption(spec.agentSocket)},server=on,wait=off`,
    "-device",
    `virtserialport,chardev=agent,name=${AGENT_PORT}`,
    "-object",
    "rng-random,id=rng0,filename=/dev/urandom",
    "-device",
    "virtio-rng-device,rng=rng0",
  ];
  if (spec.memoryFile) {
    const { path, shared } = spec.memoryFile;
    args.push("-object", `memory-backend-file,id=${RAM_BACKEND_ID},size=${spec.memoryMiB}M,mem-path=${escapeOption(path)},share=${shared ? "on" : "off"}`);
  }
  if (spec.network) {
    const netdev = spec.network.kind === "tap" ? netdevTap(spec.network) : netdevUser(spec.network);
    args.push("-netdev", netdev, "-device", `virtio-net-device,netdev=net0,mac=${spec.network.mac}`);
  }
  args.push("-qmp", `unix:${escapeOption(spec.qmpSocket)},server=on,wait=off`, "-pidfile", spec.pidFile);
  if (spec.incoming) args.push("-incoming", "defer");
  else if (spec.freeze) args.push("-S");
  return args;
}
