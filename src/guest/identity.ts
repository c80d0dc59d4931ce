// Makes the guest the machine the host says it is: hostname, SSH keys, and userdata run once per disk.
// The host delivers the identity every time it connects, so applying it is idempotent: userdata that has
// started or finished (a marker on the VM's own disk) never runs again.
import { spawn } from "node:child_process";
import { constants as osConstants } from "node:os";
import { chmodSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, writeFileSync } from "node:fs";
import type { GuestIdentity } from "../protocol/agent.ts";
import { guestEnvironment } from "./users.ts";

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
    await setHostname(identity.hostname);
    if (identity.ssh_keys && identity.ssh_keys.length > 0) this.installSshKeys(identity.ssh_keys);
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

  private installSshKeys(keys: readonly string[]): void {
    mkdirSync(this.paths.rootSshDir, { recursive: true, mode: 0o700 });
    chmodSync(this.paths.rootSshDir, 0o700);
    const file = `${this.paths.rootSshDir}/authorized_keys`;
    const existing = existsSync(file) ? readFileSync(file, "utf8").split("\n").filter((l) => l.trim()) : [];
    const merged = [...new Set([...existing, ...keys.map((k) => k.trim()).filter((k) => k)])];
    writeFileSync(file, `${merged.join("\n")}\n`, { mode: 0o600 });
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

async function setHostname(hostname: string): Promise<void> {
  // Node has no sethostname(2); busybox's hostname applet calls it.
  await new Promise<void>((resolve) => {
    const child = spawn("hostname", [hostname], { stdio: "ignore" });
    child.on("error", () => resolve());
    child.on("exit", () => resolve());
  });
  writeFileSync("/etc/hostname", `${hostname}\n`);
  const hosts = existsSync("/etc/hosts") ? readFileSync("/etc/hosts", "utf8") : "";
  const lines = hosts.split("\n").filter((l) => l.trim() && !l.startsWith("127.0.1.1"));
  writeFileSync("/etc/hosts", `${[...lines, `127.0.1.1 ${hostname}`].join("\n")}\n`);
}
