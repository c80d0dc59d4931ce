// The seam between the daemon and whatever runs its machines (DESIGN.md: src/engine/ = engines behind one
// Machine interface), in the spirit of Cloud Hypervisor's hypervisor trait and Incus' instance drivers. An
// Engine starts a machine from a spec or re-attaches to one a previous daemon started; a Machine is one
// running guest: its process, its power, its saved state, its exit. The daemon speaks only this vocabulary:
// QEMU's words (QMP commands, event names, run states) stay in src/engine/qemu/.

/** How a machine's process ended, as the OS told it. */
export interface ExitInfo {
  /** null when the process was not ours to wait for (re-attached after a restart) or died of a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * Why a machine ended:
 * - `requested`: the daemon asked (shutdown) and it ended by itself within the grace period;
 * - `killed`: the daemon killed it (kill, or a shutdown whose grace ran out);
 * - `guest`: it ended on its own with an exit status (the guest powered off, or reset under no-reboot);
 * - `crashed`: a signal the daemon did not send (SIGBUS on a RAM file, the OOM killer, an operator);
 * - `vanished`: a re-attached process that is gone; not our child, so no status is known.
 */
export type ExitCause = "requested" | "killed" | "guest" | "crashed" | "vanished";

export interface MachineExit extends ExitInfo {
  cause: ExitCause;
}

/** What a machine (or every machine of an engine) can do; callers check before they ask. */
export interface MachineCapabilities {
  /** RAM can live in a file: a template's machine saves its state without its RAM, clones map the file privately. */
  memoryTemplates: boolean;
  /** The machine's state (RAM and devices) can be saved to a file and loaded into a new machine. */
  saveState: boolean;
  /** The NIC's carrier can be lowered and raised while the machine runs. */
  linkControl: boolean;
  /** A machine started by an earlier daemon can be found again by its pid and controlled. */
  reattach: boolean;
}

/** A host port forwarded to a guest port (user mode). */
export interface PortForward {
  hostAddress: string;
  hostPort: number;
  guestPort: number;
}

/** User-mode networking inside the engine (QEMU's slirp): the guest alone in its own subnet. */
export interface UserNic {
  kind?: "user";
  /** Guest address with prefix length, e.g. "10.0.2.15/24". */
  guestCidr: string;
  gateway: string;
  dns: string;
  mac: string;
  forwards: readonly PortForward[];
  /** Block the guest's outbound traffic; port forwards still work. */
  denyOutgoing: boolean;
}

/**
 * A TAP the host side made: the engine opens `ifname` in whatever network namespace it runs in. A state
 * saved on a TAP only loads on a TAP.
 */
export interface TapNic {
  kind: "tap";
  ifname: string;
  /** vhost-net (only when /dev/vhost-net exists). */
  vhost: boolean;
  mac: string;
}

/** The one NIC a machine has. */
export type MachineNic = UserNic | TapNic;

/** A machine to start: direct kernel boot of a kernel and initrd, one disk, a console log, the agent's port. */
export interface MachineSpec {
  cpus: number;
  memoryMiB: number;
  kernel: string;
  initrd: string;
  cmdline: string;
  disk: { path: string; format: "qcow2" | "raw" };
  /** The serial console, appended to this file. */
  serialLog: string;
  /** The unix socket the guest agent's port is served on. */
  agentSocket: string;
  network: MachineNic | undefined;
  /** Start with the vCPUs stopped until `resume`: a NIC is plumbed on the host side first. */
  freeze?: boolean;
  /** Start with the vCPUs stopped, waiting for `loadState`. */
  incoming?: boolean;
  /**
   * Guest RAM in a file instead of anonymous memory (memoryTemplates). `shared`: the guest writes into the
   * file (a template being made); otherwise it is mapped privately, copy-on-write.
   */
  memoryFile?: { path: string; shared: boolean };
}

/**
 * The engine's own files for one machine, in the machine's folder (the names are the caller's, so a
 * re-attaching daemon finds them again).
 */
export interface MachineFiles {
  /** The engine's control socket (QEMU: QMP). */
  control: string;
  /** A transcript of everything said on the control socket, for post-mortems. */
  transcript: string;
  /** The engine's own stdout and stderr. */
  log: string;
  pidFile: string;
  /** A socket the state is streamed through on save and load. */
  stateSocket: string;
}

export interface StartOptions {
  /** How long the engine may take to answer on its control socket. */
  timeoutMs?: number;
  /** The group id the machine's process runs with (the daemon's wall between guests and the host keys on it). */
  gid?: number;
  /** argv the engine is exec'd through (e.g. into a network namespace); it must exec, not fork. */
  argvPrefix?: readonly string[];
}

/** A machine as recorded: enough for another daemon to find the same process again. */
export interface RecordedMachine {
  pid: number;
  /** The process's start time (see processStartTime): a recycled pid has another. */
  startTime: string;
  files: Pick<MachineFiles, "control" | "transcript" | "stateSocket">;
}

/** Why the vCPUs are not running: a pause, a disk error that stopped them, an ended guest, ... */
export interface RunState {
  running: boolean;
  /** The vCPUs were stopped on a failed disk write (`nospace`: the host had no room). */
  diskError?: { nospace: boolean };
  /** The engine's own word for the state, for messages ("paused", "io-error", "shutdown", ...). */
  detail: string;
}

/** What a disk request that failed did (see the `disk-error` event). */
export interface DiskError {
  device: string;
  operation: "read" | "write";
  /** `stop`: the vCPUs were stopped and the request is retried on resume. */
  action: "ignore" | "report" | "stop";
  nospace: boolean;
  reason: string;
}

/** What a machine tells its supervisor while it runs. */
export type MachineEvent = { type: "stopped" } | { type: "resumed" } | { type: "reset" } | { type: "shutdown"; byGuest: boolean } | ({ type: "disk-error" } & DiskError);

export type MachineEventType = MachineEvent["type"];

export interface SaveStateOptions {
  /**
   * After the state is written: `quit` ends the machine (a template), `resume` runs the vCPUs
   * again if they ran before, `stay` leaves them stopped (suspend: the record says "suspended" before the
   * machine goes; a commit, inside its own withVcpusStopped). On a failed save the partial file is removed
   * and the vCPUs run again if they ran before, whatever `after` says.
   */
  after: "quit" | "resume" | "stay";
  /** How long the machine may take to end after a `quit`, before it is killed. */
  graceMs?: number;
  /** How long the state may take to write. */
  deadlineMs?: number;
}

export interface Machine {
  readonly engine: string;
  readonly pid: number;
  /** The process's start time: with the pid, what a daemon records to re-attach. */
  readonly startTime: string;
  readonly capabilities: MachineCapabilities;
  /** The process exists (and is still this machine's process). */
  readonly running: boolean;
  /** Settles once, when the process is gone, with the cause. */
  readonly exited: Promise<MachineExit>;
  /** The NIC's link as this daemon last set it; `unknown` for a re-attached machine. */
  readonly link: "up" | "down" | "unknown";

  /** Calls `listener` for every event until the returned function is called. */
  onEvent(listener: (event: MachineEvent) => void): () => void;
  /** Resolves with the next event of that type; rejects after `timeoutMs` or when the machine ends. */
  nextEvent(type: MachineEventType, timeoutMs: number): Promise<MachineEvent>;

  /** Stops the vCPUs. */
  pause(): Promise<void>;
  /** Runs the vCPUs again, whatever stopped them (a disk error's stop retries the failed requests). */
  resume(): Promise<void>;
  /** Resets the machine in the same process (a reboot without the guest's say); resolves once it reset. */
  reset(): Promise<void>;
  runState(): Promise<RunState>;
  /** Sets the NIC's carrier (linkControl). */
  setLink(up: boolean): Promise<void>;

  /**
   * Stops the vCPUs (if they run), does `work`, and runs them again if they ran before: after a failure
   * always, after a success unless `resume` is "on-failure" (the caller ends or keeps the machine stopped).
   */
  withVcpusStopped<T>(work: () => Promise<T>, options?: { resume: "always" | "on-failure" }): Promise<T>;
  /** Writes the machine's state to `file`, stopping the vCPUs first (saveState); see SaveStateOptions. */
  saveState(file: string, options: SaveStateOptions): Promise<void>;
  /** Loads a state saved by saveState into a machine started with `incoming`, then runs the vCPUs. */
  loadState(file: string, options?: { deadlineMs?: number }): Promise<void>;
  /** From now on, save and load states so that a template's RAM file is left out of them (memoryTemplates). */
  useMemoryTemplate(): Promise<void>;

  /**
   * Asks the machine to end (QEMU: `quit`, which flushes its disk caches; the guest's own power-off is the
   * agent's business), then kills it when it has not ended after `graceMs`. Resolves with the exit.
   */
  shutdown(options: { graceMs: number }): Promise<MachineExit>;
  /** Ends the process at once; resolves with the exit. */
  kill(): Promise<MachineExit>;
  /** The folder was renamed: the engine's files are here now (the transcript goes on in its new place). */
  moveFiles(files: Pick<MachineFiles, "transcript" | "stateSocket">): void;
  /** Lets go of the control connection (the process is not touched). */
  dispose(): void;
}

export interface Engine {
  readonly name: string;
  readonly capabilities: MachineCapabilities;
  /** Changes when the engine's build does: a saved state (a template) is only loaded by the identity that made it. */
  readonly identity: string;
  /** Starts a machine; with `freeze` or `incoming` its vCPUs wait for `resume` or `loadState`. */
  start(spec: MachineSpec, files: MachineFiles, options?: StartOptions): Promise<Machine>;
  /**
   * Finds a machine started earlier (by this or another daemon) and takes control of it; undefined when the
   * process is gone or is another one now, or when it runs but cannot be controlled (it is killed then: a
   * machine nothing controls is worse than none).
   */
  reattach(recorded: RecordedMachine): Promise<Machine | undefined>;
  /** Pids of this engine's processes whose command line names a path under `dir` (orphans after a crash). */
  processesUnder(dir: string): number[];
  /** Ends a process found by processesUnder (an orphan nothing controls). */
  killOrphan(pid: number): void;
}
