// Same-page merging (the kernel's KSM) for QEMU processes, on when the daemon's config says `ksm: true`.
//
// QEMU marks each guest's RAM mergeable by itself (mem-merge, on by default), but an idle clone's memory is
// mostly QEMU's own: its heap, its device and slirp buffers, under TCG the translated code. Linux 6.4 added
// PR_SET_MEMORY_MERGE, which makes all of a process's anonymous memory mergeable, and since 6.7 the flag
// survives execve: setting it in a small launcher right before QEMU is exec'd covers every byte QEMU will
// map. Node cannot call prctl(2), and perl (perl-base is Essential on Debian and Ubuntu) can, so the launcher
// is a perl one-liner that sets the flag and execs the real command line.
//
// Off by default: merging costs ksmd's CPU, and a page shared between two guests lets one time the other's
// writes to it (the known cross-VM side channel of memory deduplication). A host of mutually trusting
// sandboxes may want the memory; a host of strangers' code should not share pages between them.
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";

export const KSM_DIR = "/sys/kernel/mm/ksm";

/** prctl's number per architecture (the syscall perl calls by number); absent: not supported here. */
const PRCTL_SYSCALL: Partial<Record<NodeJS.Architecture, number>> = { x64: 157, arm64: 167 };
const PR_SET_MEMORY_MERGE = 67;

/** What the host offers for merging QEMU's memory. */
export interface MemoryMergeSupport {
  /** The kernel has KSM (/sys/kernel/mm/ksm). */
  ksm: boolean;
  /** ksmd scans (run = 1); merging needs it. */
  running: boolean;
  /** PR_SET_MEMORY_MERGE works and survives exec (Linux 6.7+): QEMU's own memory can be merged, not only guest RAM. */
  wholeProcess: boolean;
}

/** The perl program that sets PR_SET_MEMORY_MERGE and runs its arguments; undefined on an unknown architecture. */
function launcherScript(): string | undefined {
  const prctl = PRCTL_SYSCALL[process.arch];
  if (prctl === undefined) return undefined;
  // A failed prctl (an older kernel) is said on stderr (QEMU's log) and the command runs anyway: merging is
  // an optimisation, never a reason not to start a machine.
  return (
    `syscall(${prctl}, ${PR_SET_MEMORY_MERGE}, 1, 0, 0, 0) == 0 or warn "corral: no whole-process memory merging: $!\\n"; ` +
    `exec { $ARGV[0] } @ARGV or die "corral: cannot run $ARGV[0]: $!\\n"`
  );
}

/**
 * The argv prefix that starts a program with all its memory mergeable (`perl -e SCRIPT --` before the
 * program and its arguments); undefined where the architecture's prctl number is unknown.
 */
export function mergeAllMemoryPrefix(): readonly string[] | undefined {
  const script = launcherScript();
  return script === undefined ? undefined : ["perl", "-e", script, "--"];
}

function readKsm(file: string): string | undefined {
  try {
    return readFileSync(`${KSM_DIR}/${file}`, "utf8").trim();
  } catch {
    return undefined;
  }
}

/**
 * Whether the launcher's flag reaches an exec'd program: the probe sets it and execs grep on its own
 * /proc/self/ksm_stat (kernels that drop the flag at exec, or lack it, fail the check).
 */
function flagSurvivesExec(): boolean {
  const prefix = mergeAllMemoryPrefix();
  if (prefix === undefined) return false;
  const probe = spawnSync(prefix[0] as string, [...prefix.slice(1), "grep", "-qE", "^ksm_merge_any:[[:space:]]+yes", "/proc/self/ksm_stat"], {
    stdio: "ignore",
    timeout: 5000,
  });
  return probe.status === 0;
}

export function probeMemoryMerge(): MemoryMergeSupport {
  const run = readKsm("run");
  if (run === undefined) return { ksm: false, running: false, wholeProcess: false };
  return { ksm: true, running: run === "1", wholeProcess: flagSurvivesExec() };
}

/**
 * Starts ksmd when it is stopped (run = 0; as root). A host-wide setting, left on when the daemon stops:
 * it is what the operator asked for with `ksm: true`, and other daemons may rely on it. Returns whether
 * ksmd runs now; run = 2 (unmerge everything, set by an operator) is left alone.
 */
export function startKsm(): boolean {
  const run = readKsm("run");
  if (run === "1") return true;
  if (run !== "0") return false;
  try {
    writeFileSync(`${KSM_DIR}/run`, "1");
  } catch {
    return false;
  }
  return readKsm("run") === "1";
}

/** Pages ksmd has merged (`pages_sharing`: the mappings that now point at a shared page), host-wide. */
export function ksmPagesSharing(): number | undefined {
  const value = readKsm("pages_sharing");
  return value === undefined ? undefined : Number(value);
}
