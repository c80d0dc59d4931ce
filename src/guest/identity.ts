// Makes the guest the machine the host says it is: hostname, MAC and address, SSH keys, and userdata run once per disk.
// The host delivers the identity every time it connects, so applying it is idempotent: userdata that has
// started or finished (a marker on the VM's own disk) never runs again.
import { spawn } from "node:child_process";
import { constants as osConstants } from "node:os";
import { appendFileSync, chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import type { GuestIdentity } from "../protocol/agent.ts";
import { GUEST_USER_PATTERN } from "../protocol/names.ts";
import { guestNative } from "./native.ts";
import { applyNetwork } from "./network.ts";
import { guestEnvironment, lookupUserByName, type GuestUser } from "./users.ts";

export interface IdentityPaths {
  stateDir: string;
  userdataScript: string;
  userdataStatus: string;
  userdataLog: string;
  rootSshDir: string;
}

export const DEFAULT_PATHS: IdentityPaths = {
  stateDir: "/var/lib/corral",
  userdataScript: "/var/lib/corral/userdata",
  userdataStatus: "/var/lib/corral/userdata.status",
  userdataLog: "/var/log/corral-userdata.log",
  rootSshDir: "/root/.ssh",
};

interface UserdataStatus {
  exit_code: number | null;
  finished_at?: string;
}

export class IdentityState {
  applied = false;
  userdataRan = false;
  userdataExitCode: number | null = null;
  private userdataStarted = false;

  constructor(
    private readonly paths: IdentityPaths = DEFAULT_PATHS,
    private readonly log: (line: string) => void = (line) => process.stdout.write(`${line}\n`),
  ) {
    const status = this.readStatus();
    if (status) {
      this.userdataStarted = true;
      this.userdataRan = true;
      this.userdataExitCode = status.exit_code;
    }
  }

  async apply(identity: GuestIdentity): Promise<void> {
    // Entropy first: whatever runs after this (keys, userdata) must not draw from a generator that another
    // clone of the same template shares.
    if (identity.entropy !== undefined) reseedRandom(Buffer.from(identity.entropy, "base64"), this.log);
    if (identity.time_ms !== undefined) await setClock(identity.time_ms);
    await setHostname(identity.hostname);
    if (identity.machine_id !== undefined) setMachineId(identity.machine_id);
    if (identity.mac !== undefined) await setMacAddress(identity.mac, this.log);
    // After the MAC: the address is announced (arp_notify) with the new one when the host raises the link.
    if (identity.network !== undefined) await applyNetwork(NET_INTERFACE, identity.network);
    if (identity.template) {
      // A template is snapshotted once this answers: let the init system finish booting first, so that each
      // clone starts as a booted system rather than redoing the end of the boot on its own.
      await settleBoot(this.log);
      return;
    }
    const user = identity.user ? ensureUser(identity.user) : undefined;
    if (identity.ssh_keys && identity.ssh_keys.length > 0) this.installSshKeys(identity.ssh_keys, user);
    this.applied = true;
    if (this.userdataStarted) return;
    this.userdataStarted = true;
    const userdata = identity.userdata ?? "";
    if (userdata.trim().length === 0) {
      this.markUserdata(null);
      return;
    }
    this.runUserdata(userdata);
  }

  private readStatus(): UserdataStatus | undefined {
    try {
      return JSON.parse(readFileSync(this.paths.userdataStatus, "utf8")) as UserdataStatus;
    } catch {
      return undefined;
    }
  }

  private markUserdata(exitCode: number | null): void {
    mkdirSync(this.paths.stateDir, { recursive: true });
    const status: UserdataStatus = { exit_code: exitCode, finished_at: new Date().toISOString() };
    writeFileSync(this.paths.userdataStatus, JSON.stringify(status));
    this.userdataExitCode = exitCode;
    this.userdataRan = true;
  }

  /** Adds keys to the user's (or root's) authorized_keys, keeping the ones already there. */
  private installSshKeys(keys: readonly string[], user: GuestUser | undefined): void {
    const sshDir = user ? `${user.home}/.ssh` : this.paths.rootSshDir;
    mkdirSync(sshDir, { recursive: true, mode: 0o700 });
    chmodSync(sshDir, 0o700);
    const file = `${sshDir}/authorized_keys`;
    const existing = existsSync(file)
      ? readFileSync(file, "utf8")
          .split("\n")
          .filter((l) => l.trim())
      : [];
    const merged = [...new Set([...existing, ...keys.map((k) => k.trim()).filter((k) => k)])];
    writeFileSync(file, `${merged.join("\n")}\n`, { mode: 0o600 });
    if (user) {
      chownSync(sshDir, user.uid, user.gid);
      chownSync(file, user.uid, user.gid);
    }
  }

  /** Runs the script with /bin/sh unless it names its own interpreter; output goes to a log file. */
  private runUserdata(userdata: string): void {
    mkdirSync(this.paths.stateDir, { recursive: true });
    writeFileSync(this.paths.userdataScript, userdata, { mode: 0o700 });
    const logFd = openSync(this.paths.userdataLog, "a");
    const argv = userdata.startsWith("#!") ? [this.paths.userdataScript] : ["/bin/sh", this.paths.userdataScript];
    this.log(`running userdata (${userdata.length} bytes)`);
    const child = spawn(argv[0] as string, argv.slice(1), {
      stdio: ["ignore", logFd, logFd],
      env: guestEnvironment(0, []),
      cwd: "/root",
    });
    closeSync(logFd);
    child.on("error", (err) => {
      this.log(`userdata could not start: ${err.message}`);
      this.markUserdata(127);
    });
    child.on("exit", (code, signal) => {
      const exitCode = code ?? 128 + ((signal && (osConstants.signals as Record<string, number>)[signal]) || 0);
      this.log(`userdata finished with exit code ${exitCode}`);
      this.markUserdata(exitCode);
    });
  }
}

/** How long a template build waits for systemd to finish booting before it snapshots anyway. */
const BOOT_SETTLE_MS = 180_000;

/** Under systemd: waits until the boot's jobs are done (`is-system-running --wait`), at most BOOT_SETTLE_MS. */
async function settleBoot(log: (line: string) => void): Promise<void> {
  if (!existsSync("/run/systemd/system")) return;
  const started = Date.now();
  const state = await new Promise<string>((resolve) => {
    const child = spawn("systemctl", ["is-system-running", "--wait"], { stdio: ["ignore", "pipe", "ignore"], timeout: BOOT_SETTLE_MS });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    child.on("error", () => resolve("unknown (systemctl did not start)"));
    child.on("close", () => resolve(out.trim() || "unknown"));
  });
  log(`boot settled for the template: systemd is ${state} after ${Date.now() - started} ms`);
}

function runQuietly(file: string, args: string[]): Promise<void> {
  return new Promise<void>((resolve) => {
    const child = spawn(file, args, { stdio: "ignore" });
    child.on("error", () => resolve());
    child.on("exit", () => resolve());
  });
}

/** Sets the clock from the host's when it is off (after a restore it is as old as the snapshot). */
async function setClock(hostMs: number): Promise<void> {
  const native = guestNative();
  if (native) {
    if (Math.abs(Date.now() - hostMs) >= CLOCK_TOLERANCE_MS) native.setTime(Math.round(hostMs));
    return;
  }
  if (Math.abs(Date.now() - hostMs) < 1000) return;
  // busybox date takes "@seconds"; a second's precision is what settimeofday through date gives.
  await runQuietly("date", ["-u", "-s", `@${Math.round(hostMs / 1000)}`]);
}

/** How far off the guest clock may be before it is set (the host's time is a few ms old when it arrives). */
const CLOCK_TOLERANCE_MS = 20;

const MACHINE_ID_PATTERN = /^[0-9a-f]{32}$/;
const MAC_PATTERN = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
/** The guest's one network interface (virtio-net, on any back end). */
const NET_INTERFACE = "eth0";

function reseedRandom(seed: Buffer, log: (line: string) => void): void {
  if (seed.length === 0) return;
  const native = guestNative();
  if (native) {
    native.reseedRandom(seed.subarray(0, 512));
    return;
  }
  // Without the addon the bytes are still mixed in, but the generator is only rekeyed on its own schedule.
  writeFileSync("/dev/urandom", seed);
  log("entropy mixed in without an immediate reseed (native addon missing)");
}

function setMachineId(id: string): void {
  if (!MACHINE_ID_PATTERN.test(id)) throw new Error(`Invalid machine id ${JSON.stringify(id)}`);
  writeFileSync("/etc/machine-id", `${id}\n`, { mode: 0o444 });
}

async function setMacAddress(mac: string, log: (line: string) => void): Promise<void> {
  if (!MAC_PATTERN.test(mac)) throw new Error(`Invalid MAC address ${JSON.stringify(mac)}`);
  let current: string;
  try {
    current = readFileSync(`/sys/class/net/${NET_INTERFACE}/address`, "utf8").trim();
  } catch {
    return; // no network in this VM
  }
  if (current === mac) return;
  const native = guestNative();
  try {
    if (native) native.setMacAddress(NET_INTERFACE, Buffer.from(mac.replaceAll(":", ""), "hex"));
    else await runQuietly("ip", ["link", "set", "dev", NET_INTERFACE, "address", mac]);
  } catch (err) {
    log(`cannot set the MAC address: ${(err as Error).message}`);
  }
}

export const USER_NAME_PATTERN = new RegExp(GUEST_USER_PATTERN);

/**
 * A login user with a home and /bin/sh, created by appending to passwd, group and shadow. Its password is
 * "*" (no password login, not "locked": dropbear refuses keys for locked accounts, which busybox's
 * `adduser -D` would make). Existing users are returned as they are.
 */
export function ensureUser(name: string, etc = "/etc", homeRoot = "/home"): GuestUser {
  if (!USER_NAME_PATTERN.test(name)) throw new Error(`Invalid user name ${JSON.stringify(name)}`);
  const existing = lookupUserByName(name, `${etc}/passwd`);
  if (existing) return existing;
  const passwd = readFileSync(`${etc}/passwd`, "utf8");
  const used = new Set(
    passwd
      .split("\n")
      .map((l) => Number(l.split(":")[2]))
      .filter((n) => Number.isInteger(n)),
  );
  let uid = 1000;
  while (used.has(uid)) uid++;
  const home = `${homeRoot}/${name}`;
  appendFileSync(`${etc}/passwd`, `${passwd.endsWith("\n") || passwd === "" ? "" : "\n"}${name}:x:${uid}:${uid}::${home}:/bin/sh\n`);
  appendFileSync(`${etc}/group`, `${name}:x:${uid}:\n`);
  appendFileSync(`${etc}/shadow`, `${name}:*:19000:0:99999:7:::\n`);
  mkdirSync(home, { recursive: true, mode: 0o755 });
  chownSync(home, uid, uid);
  return { name, uid, gid: uid, home, shell: "/bin/sh" };
}

async function setHostname(hostname: string): Promise<void> {
  // Node has no sethostname(2): the addon calls it, else busybox's hostname applet.
  const native = guestNative();
  if (native) native.setHostname(hostname);
  else await runQuietly("hostname", [hostname]);
  writeFileSync("/etc/hostname", `${hostname}\n`);
  const hosts = existsSync("/etc/hosts") ? readFileSync("/etc/hosts", "utf8") : "";
  const lines = hosts.split("\n").filter((l) => l.trim() && !l.startsWith("127.0.1.1"));
  writeFileSync("/etc/hosts", `${[...lines, `127.0.1.1 ${hostname}`].join("\n")}\n`);
}
