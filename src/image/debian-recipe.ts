// The `debian` image's recipe, as data and pure functions: which packages, from which mirrors (the host's
// own apt sources for Debian's archive), what is changed in the root filesystem after mmdebstrap, and which
// units are masked because they only cost boot time in a micro-VM. debian-image.ts runs it.

export const DEBIAN_IMAGE = "debian";
export const DEBIAN_SUITE = "bookworm";
/** Slicer's images name theirs `ubuntu`; nothing in Slicer's SDK depends on the name, only on uid 1000. */
export const DEBIAN_DEFAULT_USER = "debian";
export const DEBIAN_DEFAULT_UID = 1000;

/**
 * On top of minbase (which has apt, bash, coreutils). udev: without it systemd never sees devices (the serial
 * console's getty would wait for ttyS0 until it times out); kmod: modprobe; dbus: logind, hostnamectl.
 */
export const DEBIAN_PACKAGES = [
  "systemd-sysv",
  "udev",
  "dbus",
  "bash",
  "coreutils",
  "python3",
  "apt",
  "ca-certificates",
  "iproute2",
  "procps",
  "curl",
  "sudo",
  "openssh-server",
  "kmod",
  "less",
] as const;

/**
 * Units masked in the image: timers and scrubbers that wake a sandbox for nothing, a getty for a VGA console
 * the VM does not have, and sshd's always-on service (SSH_SOCKET starts sshd per connection instead).
 */
export const MASKED_UNITS = [
  "apt-daily.timer",
  "apt-daily-upgrade.timer",
  "dpkg-db-backup.timer",
  "e2scrub_all.timer",
  "e2scrub_reap.service",
  "fstrim.timer",
  "getty@tty1.service",
  "ssh.service",
  "systemd-pstore.service",
  "systemd-timesyncd.service",
] as const;

/**
 * sshd per connection (bookworm's own ssh.socket only hands its socket to the always-on service): nothing
 * runs until someone connects, and the host keys are made then, so each clone of a template has its own.
 */
export const SSH_SOCKET = "corral-ssh.socket";
const SSH_SOCKET_UNIT = `# Installed by Corral: sshd started per connection.
[Unit]
Description=OpenSSH server, started per connection
Before=sockets.target
ConditionPathExists=!/etc/ssh/sshd_not_to_be_run

[Socket]
ListenStream=22
Accept=yes

[Install]
WantedBy=sockets.target
`;
const SSH_SERVICE_UNIT = `# Installed by Corral: one sshd per connection; host keys made at the first one.
[Unit]
Description=OpenSSH server for one connection
Documentation=man:sshd(8)

[Service]
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStart=-/usr/sbin/sshd -i
StandardInput=socket
StandardError=journal
RuntimeDirectory=sshd
RuntimeDirectoryMode=0755
RuntimeDirectoryPreserve=yes
KillMode=process
`;

export interface AptSource {
  uri: string;
  suite: string;
  components: string[];
}

/**
 * Debian archive entries for `suite` (and its -updates and -security suites) in the host's apt sources, in
 * both formats: deb822 (`*.sources`) and one-line (`sources.list`). Other suites and repositories (a
 * vendor's `nodistro`) are left out: the image is built from Debian's archive only.
 */
export function parseAptSources(text: string, suite: string = DEBIAN_SUITE): AptSource[] {
  const wanted = (s: string): boolean => s === suite || s.startsWith(`${suite}-`);
  const sources: AptSource[] = [];
  const add = (types: string[], uris: string[], suites: string[], components: string[], enabled: boolean): void => {
    if (!enabled || !types.includes("deb")) return;
    for (const uri of uris) for (const s of suites.filter(wanted)) sources.push({ uri, suite: s, components: components.length > 0 ? components : ["main"] });
  };
  // deb822 stanzas are separated by blank lines; a one-line file has lines starting with "deb".
  if (/^\s*Types:/im.test(text)) {
    for (const stanza of text.split(/\n\s*\n/)) {
      const fields = new Map<string, string>();
      for (const line of stanza.split("\n")) {
        if (line.trimStart().startsWith("#")) continue;
        const match = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
        if (match?.[1]) fields.set(match[1].toLowerCase(), (match[2] ?? "").trim());
      }
      const words = (key: string): string[] => (fields.get(key) ?? "").split(/\s+/).filter((w) => w.length > 0);
      add(words("types"), words("uris"), words("suites"), words("components"), (fields.get("enabled") ?? "yes").toLowerCase() !== "no");
    }
  } else {
    for (const raw of text.split("\n")) {
      const line = raw
        .replace(/#.*$/, "")
        .replace(/\[[^\]]*\]/, "")
        .trim();
      const [type, uri, s, ...components] = line.split(/\s+/);
      if (type && uri && s) add([type], [uri], [s], components, true);
    }
  }
  return sources;
}

/** The one-line form mmdebstrap takes as its MIRROR arguments. */
export function mirrorLines(sources: readonly AptSource[]): string[] {
  return [...new Set(sources.map((s) => `deb ${s.uri} ${s.suite} ${s.components.join(" ")}`))];
}

/** The `Date:` of an InRelease or Release file: when the archive last changed. */
export function releaseDate(release: string): string | undefined {
  return /^Date:\s*(.+)$/m.exec(release)?.[1]?.trim();
}

/** apt's file name for a list it downloaded from `uri` for `suite` ("deb.debian.org_debian_dists_bookworm_InRelease"). */
export function aptListName(uri: string, suite: string): string {
  const path = uri.replace(/^[a-z+]+:\/\//, "").replace(/\/+$/, "");
  return `${path.replaceAll("/", "_")}_dists_${suite.replaceAll("/", "_")}_InRelease`;
}

/** Files written into the image after mmdebstrap (paths relative to its root), with their modes. */
export function debianFiles(user: string): Record<string, { contents: string; mode: number }> {
  return {
    [`etc/sudoers.d/90-corral-${user}`]: {
      contents: `# Corral: the image's default user runs anything as root without a password.\n${user} ALL=(ALL:ALL) NOPASSWD:ALL\n`,
      mode: 0o440,
    },
    "etc/hostname": { contents: "debian\n", mode: 0o644 },
    "etc/hosts": { contents: "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n127.0.1.1 debian\n", mode: 0o644 },
    "etc/resolv.conf": { contents: "nameserver 10.0.2.3\n", mode: 0o644 },
    "etc/fstab": { contents: "# Corral: the initramfs mounts the root disk (/dev/vda) read-write; nothing else to mount.\n", mode: 0o644 },
    // Empty: each VM gets its own at first boot, and the agent sets the one the host chose.
    "etc/machine-id": { contents: "", mode: 0o444 },
    // The journal in memory: a sandbox's disk is for its work, and writes cost more than they are worth here.
    "etc/systemd/journald.conf.d/corral.conf": { contents: "[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\nForwardToConsole=no\n", mode: 0o644 },
    [`etc/systemd/system/${SSH_SOCKET}`]: { contents: SSH_SOCKET_UNIT, mode: 0o644 },
    "etc/systemd/system/corral-ssh@.service": { contents: SSH_SERVICE_UNIT, mode: 0o644 },
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, expanded by the guest's shell
    "etc/profile.d/corral.sh": { contents: "# Corral: a default locale every image has.\nexport LANG=${LANG:-C.UTF-8}\n", mode: 0o644 },
  };
}

/** Commands run in the image's root (with chroot) after its files are written, in order. */
export function debianCommands(user: string, uid: number = DEBIAN_DEFAULT_UID): string[][] {
  return [
    ["useradd", "--create-home", "--shell", "/bin/bash", "--uid", String(uid), "--user-group", "--groups", "sudo", user],
    // "*": no password login, but not locked ("!"), which sshd would refuse even for keys without PAM.
    ["usermod", "--password", "*", user],
    ["systemctl", "mask", ...MASKED_UNITS],
    ["systemctl", "enable", SSH_SOCKET, "serial-getty@ttyS0.service"],
    ["systemctl", "set-default", "multi-user.target"],
    // Host keys made by the package are the same in every image: each VM makes its own.
    ["sh", "-c", "rm -f /etc/ssh/ssh_host_*"],
    ["apt-get", "clean"],
    ["sh", "-c", "rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/*.log /tmp/* /var/tmp/*"],
  ];
}
