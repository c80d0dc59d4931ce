// The wall between guests and the host's own services (rules: host-isolation-rules.ts), as a daemon runs it:
// set up at start before any VM is touched (or the daemon refuses to start: it fails closed), watched and put
// back when something removes it (`nft flush ruleset`, a firewall reload), this daemon's allowances taken
// down at stop, its state reported for GET /info, and VMs found whose QEMU runs outside it.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { networkInterfaces } from "node:os";
import { processStartTime } from "../engine/index.ts";
import type { HostIsolationInfo } from "../protocol/host-isolation.ts";
import type { Logger } from "../util/log.ts";
import { CommandError, findProgram, run } from "../util/run.ts";
import { formatHostAccess, type HostAccess } from "./host-access.ts";
import { GUEST_GROUP, guestGroupId, processSocketGid } from "./guest-group.ts";
import { allowanceChain, allowanceScript, parseAllowanceJumps, releaseScript, resolversOf, WALL_TABLE, wallBaseScript } from "./host-isolation-rules.ts";

export interface HostIsolationConfig {
  /** false: guests run unwalled, on purpose (config.network.host_isolation). */
  enabled: boolean;
  /** Host services guests may reach (config.network.host_access). */
  hostAccess: readonly HostAccess[];
}

export interface HostIsolationOptions {
  config: HostIsolationConfig;
  stateDir: string;
  log: Logger;
  /** The file listing the host's DNS resolvers. */
  resolvConf?: string;
}

/** A VM's QEMU process, as its record names it. */
export interface VmProcess {
  hostname: string;
  pid: number | null;
  pidStartTime: string | null;
}

export class HostIsolationError extends Error {
  constructor(what: string, options?: { cause?: unknown }) {
    super(
      `Cannot wall guests off from this host's services: ${what}. Without the wall every guest reaches the daemon's API, ` +
        "other VMs' forwarded ports and everything listening on this host. Fix that, or set " +
        "config.network.host_isolation: false to run guests unwalled on purpose",
      options,
    );
    this.name = "HostIsolationError";
  }
}

const OFF_WARNING = "Host isolation is off (config.network.host_isolation: false): guests reach every service listening on this host";

function lastLines(err: unknown): string {
  const text = err instanceof CommandError ? err.stderr.trim() || err.message : err instanceof Error ? err.message : String(err);
  return text.split("\n").slice(-3).join(" | ");
}

/** This host's own addresses (the wall's concern); an allowance for another address would change nothing. */
function isHostAddress(address: string): boolean {
  if (/^127\./.test(address) || address === "::1") return true;
  return Object.values(networkInterfaces()).some((list) => list?.some((i) => i.address.toLowerCase() === address));
}

export class HostIsolation {
  private watchTimer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;

  private constructor(
    /** The group QEMU runs with; undefined when the wall is off (QEMU then runs with the daemon's own). */
    readonly gid: number | undefined,
    private readonly options: HostIsolationOptions,
    private readonly nft: string | undefined,
  ) {}

  /** Sets the wall up (or notes that it is off on purpose); throws HostIsolationError when it cannot. */
  static async setUp(options: HostIsolationOptions): Promise<HostIsolation> {
    const { config, log } = options;
    if (!config.enabled) {
      log.warn(OFF_WARNING);
      return new HostIsolation(undefined, options, undefined);
    }
    const uid = process.getuid?.();
    if (uid !== 0) throw new HostIsolationError(`the daemon runs as uid ${uid ?? "unknown"}, not root: nftables rules and the guests' group need root`);
    const nft = findProgram("nft");
    if (!nft) throw new HostIsolationError(`"nft" is not installed (Debian package "nftables"; ./corral up installs it)`);
    let gid: number;
    try {
      gid = await guestGroupId();
    } catch (err) {
      throw new HostIsolationError(`the group "${GUEST_GROUP}" cannot be made: ${lastLines(err)}`, { cause: err });
    }
    const isolation = new HostIsolation(gid, options, nft);
    try {
      await isolation.installBase();
    } catch (err) {
      throw new HostIsolationError(`nft cannot install the table "inet ${WALL_TABLE}": ${lastLines(err)}`, { cause: err });
    }
    try {
      await isolation.applyAllowances();
    } catch (err) {
      throw new HostIsolationError(`nft cannot install this daemon's host_access allowances: ${lastLines(err)}`, { cause: err });
    }
    for (const access of config.hostAccess) {
      if (access.address !== undefined && !isHostAddress(access.address)) {
        log.warn({ entry: formatHostAccess(access) }, "config.network.host_access names an address that is not this host's: the wall does not concern it");
      }
    }
    log.info({ table: `inet ${WALL_TABLE}`, group: GUEST_GROUP, gid, host_access: config.hostAccess.map(formatHostAccess) }, "Guests are walled off from this host's services");
    return isolation;
  }

  private async installBase(): Promise<void> {
    const resolvers = resolversOf(await readFile(this.options.resolvConf ?? "/etc/resolv.conf", "utf8").catch(() => ""));
    await run(this.nft as string, ["-f", "-"], { input: wallBaseScript({ gid: this.gid as number, resolvers }) });
  }

  /**
   * Checks every `intervalMs` that the wall and this daemon's allowances are in place, and puts back what
   * something removed (a firewall reload or `nft flush ruleset` takes every table), saying so in the log.
   * Kubernetes' kube-proxy watches its own chains the same way. Guests are unwalled until the next check.
   */
  watch(intervalMs = 5000): void {
    if (this.nft === undefined || this.watchTimer) return;
    this.watchTimer = setInterval(() => {
      this.checking ??= this.repair().finally(() => (this.checking = undefined));
    }, intervalMs);
    this.watchTimer.unref();
  }

  private async repair(): Promise<void> {
    const { log, stateDir, config } = this.options;
    try {
      const jumps = await this.listJumps().catch(() => undefined);
      // Intact: the output chain still names the guests' group and still rejects (an edit by hand that
      // dropped either counts as removed), and this daemon's allowances are still reached.
      const output = await run(this.nft as string, ["list", "chain", "inet", WALL_TABLE, "output"]).catch(() => "");
      const baseIntact = jumps !== undefined && output.includes(`meta skgid != ${this.gid} return`) && output.includes("reject with tcp reset");
      const ownIntact = config.hostAccess.length === 0 || (jumps ?? []).some((j) => j.target === allowanceChain(stateDir));
      if (baseIntact && ownIntact) return;
      if (!baseIntact) await this.installBase();
      await this.applyAllowances();
      log.error({ table: `inet ${WALL_TABLE}` }, "The wall between guests and this host's services was removed (a firewall reload or nft flush ruleset?): it is back");
    } catch (err) {
      log.error({ err }, "Cannot put back the wall between guests and this host's services");
    }
  }

  /**
   * Gives this daemon's chain exactly its allowances and drops those of daemons whose state directory is
   * gone. Retried: another daemon may change the dispatch chain between the listing and the update.
   */
  private async applyAllowances(): Promise<void> {
    const { stateDir } = this.options;
    for (let attempt = 1; ; attempt++) {
      const jumps = await this.listJumps();
      const staleOwners = [
        ...new Set(jumps.flatMap((j) => (j.owner !== undefined && j.owner !== stateDir && j.target === allowanceChain(j.owner) && !existsSync(j.owner) ? [j.owner] : []))),
      ];
      try {
        await run(this.nft as string, ["-f", "-"], { input: allowanceScript({ stateDir, access: this.options.config.hostAccess, jumps, staleOwners }) });
        return;
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
  }

  private async listJumps(): Promise<ReturnType<typeof parseAllowanceJumps>> {
    return parseAllowanceJumps(await run(this.nft as string, ["-j", "list", "chain", "inet", WALL_TABLE, "allow"]));
  }

  /** VMs whose QEMU process runs outside the guests' group (all of them while the wall is off). */
  unwalled(vms: readonly VmProcess[]): string[] {
    return vms
      .filter((vm) => vm.pid !== null && vm.pidStartTime !== null && processStartTime(vm.pid) === vm.pidStartTime)
      .filter((vm) => this.gid === undefined || processSocketGid(vm.pid as number) !== this.gid)
      .map((vm) => vm.hostname);
  }

  info(vms: readonly VmProcess[]): HostIsolationInfo {
    const unwalled = this.unwalled(vms);
    if (this.gid === undefined) {
      return { state: "off", table: null, group: null, gid: null, host_access: [], unwalled_vms: unwalled, warning: OFF_WARNING };
    }
    return {
      state: "on",
      table: `inet ${WALL_TABLE}`,
      group: GUEST_GROUP,
      gid: this.gid,
      host_access: this.options.config.hostAccess.map(formatHostAccess),
      unwalled_vms: unwalled,
      warning: unwalled.length > 0 ? `${unwalled.length} VM(s) run outside the wall (started by an older daemon or with the wall off): restart them to wall them off` : null,
    };
  }

  /** Takes this daemon's allowances down (the table stays: other daemons on the host use it). */
  async release(): Promise<void> {
    clearInterval(this.watchTimer);
    this.watchTimer = undefined;
    await this.checking;
    if (this.nft === undefined) return;
    try {
      await run(this.nft, ["-f", "-"], { input: releaseScript(this.options.stateDir, await this.listJumps()) });
    } catch (err) {
      this.options.log.warn({ err }, "Cannot remove this daemon's host_access allowances from the wall");
    }
  }
}
