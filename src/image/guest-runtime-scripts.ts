// The texts the guest runtime writes into an image: Corral's own init (tini + boot script), the script that
// applies the kernel command line's corral.* arguments, and the systemd units for images that boot systemd.
// Pure functions of their inputs, so tests pin them and image version ids hash them.
import { BOOT_ARGS } from "../protocol/boot.ts";

/** Everything the runtime brings lives under this folder; nothing in it depends on the image's own files. */
export const RUNTIME_DIR = "/opt/corral";
export const RUNTIME_BIN = `${RUNTIME_DIR}/bin`;
export const RUNTIME_LIB = `${RUNTIME_DIR}/lib`;
export const RUNTIME_BUSYBOX = `${RUNTIME_BIN}/busybox`;
export const RUNTIME_NODE = `${RUNTIME_BIN}/node`;
export const AGENT_GUEST_PATH = `${RUNTIME_DIR}/agent.mjs`;
/** node-pty's native addon, loaded by the agent for shells (built for the same node that runs the agent). */
export const PTY_ADDON_GUEST_PATH = `${RUNTIME_DIR}/pty.node`;
export const NATIVE_ADDON_GUEST_PATH = `${RUNTIME_DIR}/corral-native.node`;
/** Corral's PID 1 for images without an init of their own (or whose init Corral does not run). */
export const CORRAL_INIT_PATH = `${RUNTIME_DIR}/init`;
export const CORRAL_BOOT_PATH = `${RUNTIME_DIR}/boot`;
export const CONFIGURE_PATH = `${RUNTIME_DIR}/configure`;
/**
 * One line: the absolute path (inside the image) of the program the initramfs hands over to. Written by
 * the runtime so that the initramfs never has to guess between the image's init and Corral's.
 */
export const PID1_FILE = `${RUNTIME_DIR}/pid1`;
/** The image's metadata as the guest sees it (env, working dir, user, entrypoint, default user). */
export const IMAGE_CONFIG_GUEST_PATH = "/etc/corral/image.json";
export const GUEST_PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
export const AGENT_UNIT = "corral-agent.service";
export const CONFIGURE_UNIT = "corral-configure.service";

/** PID 1 of images booted by Corral: tini reaps orphans and forwards signals; the boot script ends in the agent. */
export const CORRAL_INIT = `#!${RUNTIME_BUSYBOX} sh
exec ${RUNTIME_BIN}/tini -- ${CORRAL_BOOT_PATH}
`;

/**
 * Applies what the host put on the kernel command line: hostname, address, gateway, DNS, and growing the root
 * filesystem when the VM's disk is bigger than the image. Runs under Corral's init and as a systemd unit;
 * it calls busybox by its full path because the image may have no shell or tools of its own.
 */
export const CONFIGURE_SCRIPT = `#!${RUNTIME_BUSYBOX} sh
bb=${RUNTIME_BUSYBOX}
ip=; gw=; dns=; growfs=
for arg in $($bb cat /proc/cmdline); do
  case "$arg" in
    ${BOOT_ARGS.hostname}=*) $bb hostname "\${arg#*=}"; echo "\${arg#*=}" > /etc/hostname ;;
    ${BOOT_ARGS.ip}=*) ip="\${arg#*=}" ;;
    ${BOOT_ARGS.gateway}=*) gw="\${arg#*=}" ;;
    ${BOOT_ARGS.dns}=*) dns="\${arg#*=}" ;;
    ${BOOT_ARGS.growRootfs}=1) growfs=1 ;;
  esac
done
# The VM's disk is bigger than the image: grow the root filesystem online, in the background.
if [ -n "$growfs" ] && [ -x ${RUNTIME_BIN}/resize2fs ]; then
  $bb mkdir -p /var/log
  (${RUNTIME_BIN}/resize2fs /dev/vda >/var/log/resize2fs.log 2>&1 &)
fi
$bb ip link set lo up
if [ -n "$ip" ]; then
  $bb ip link set eth0 up
  $bb ip addr add "$ip" dev eth0
  [ -n "$gw" ] && $bb ip route add default via "$gw"
  # /etc/resolv.conf may be a symlink into /run (systemd-resolved): write a plain file instead.
  # corral.dns is a comma-separated list: one nameserver line each, in order.
  [ -n "$dns" ] && { $bb rm -f /etc/resolv.conf; for server in $(echo "$dns" | $bb tr , ' '); do echo "nameserver $server"; done > /etc/resolv.conf; }
fi
exit 0
`;

/**
 * Runs under tini in images Corral boots itself: mounts what the kernel does not, applies the command line,
 * starts the bundled SSH server when there is one, then becomes the guest agent. If the agent exits, tini
 * exits, the kernel panics with panic=-1 and QEMU (-no-reboot) exits: a sandbox whose agent is gone is over.
 */
export const CORRAL_BOOT = `#!${RUNTIME_BUSYBOX} sh
bb=${RUNTIME_BUSYBOX}
export PATH=${GUEST_PATH_ENV}
$bb mkdir -p /proc /sys /dev/pts /dev/shm /run /tmp /var/log /root
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
$bb mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
$bb mount -t tmpfs -o mode=755,nosuid,nodev tmpfs /run
$bb ln -sf /proc/self/fd /dev/fd
$bb ln -sf /proc/self/fd/0 /dev/stdin
$bb ln -sf /proc/self/fd/1 /dev/stdout
$bb ln -sf /proc/self/fd/2 /dev/stderr
${CONFIGURE_PATH}
# A small SSH server for keys delivered with the VM's identity; it only accepts keys.
if [ -x ${RUNTIME_BIN}/dropbear ]; then
  $bb mkdir -p /etc/dropbear
  ${RUNTIME_BIN}/dropbear -R -s -p 22 2>>/var/log/dropbear.log
fi
export HOME=/root UV_THREADPOOL_SIZE=16
echo "corral-boot: $($bb hostname) is up after $($bb cut -d' ' -f1 /proc/uptime)s, starting the agent"
exec ${RUNTIME_NODE} ${AGENT_GUEST_PATH}
`;

/** Applies the command line before anything needs the hostname or the network. */
export const CONFIGURE_UNIT_TEXT = `# Installed by Corral: hostname, network and disk size from the kernel command line (corral.* arguments).
[Unit]
Description=Corral: apply the VM's hostname and network
DefaultDependencies=no
Before=sysinit.target network-pre.target systemd-networkd.service ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${CONFIGURE_PATH}

[Install]
WantedBy=sysinit.target
`;

/**
 * The agent starts at once, beside the rest of the boot (the initramfs mounted the root disk read-write, and
 * systemd mounts /proc, /sys, /dev and /run before any unit): the daemon waits for it, not for multi-user.target. KillMode=process: commands the agent started (background jobs, shells)
 * are not its to take down if systemd restarts it.
 */
export const AGENT_UNIT_TEXT = `# Installed by Corral: the guest agent the host talks to over virtio-serial.
[Unit]
Description=Corral guest agent
DefaultDependencies=no
Wants=${CONFIGURE_UNIT}
After=${CONFIGURE_UNIT}

[Service]
ExecStart=${RUNTIME_NODE} ${AGENT_GUEST_PATH}
Environment=HOME=/root UV_THREADPOOL_SIZE=16 PATH=${GUEST_PATH_ENV}
Restart=always
RestartSec=1
KillMode=process
OOMScoreAdjust=-900
StandardOutput=journal+console

[Install]
WantedBy=sysinit.target
`;

/** Every script and unit text, for the runtime's input hash. */
export function runtimeScripts(): string {
  return [CORRAL_INIT, CONFIGURE_SCRIPT, CORRAL_BOOT, CONFIGURE_UNIT_TEXT, AGENT_UNIT_TEXT].join("\0");
}
