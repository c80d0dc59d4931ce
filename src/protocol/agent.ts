// What the host daemon and the in-guest agent say to each other over the virtio-serial port (HTTP/2).
// Shared by src/daemon (client side) and src/guest (server side); no node: imports here.

/** The virtio-serial port name the agent listens on (`/sys/class/virtio-ports/*\/name`). */
export const AGENT_PORT_NAME = "corral.agent";

/** Bumped whenever the host<->guest protocol changes; images carry the agent that matches. */
export const AGENT_VERSION = "0.3.0";

/**
 * Before HTTP/2 starts on a fresh host connection, the host sends `CORRAL-HELLO <nonce>\n` and the agent
 * answers `CORRAL-READY <nonce> <version>\n`. The host discards everything before that answer: a guest write
 * that was blocked while no host was connected reaches the next host first, and must not be taken for HTTP/2.
 */
export const HANDSHAKE_HELLO = "CORRAL-HELLO";
export const HANDSHAKE_READY = "CORRAL-READY";
export const HANDSHAKE_NONCE_PATTERN = /^[A-Za-z0-9]{16,64}$/;

/**
 * The largest HTTP/2 frame either side of the agent session accepts (the default is 16 KiB). Every frame costs
 * the agent a round of JavaScript under emulation, so copies go in larger frames; 256 KiB keeps a copy from
 * holding other streams (an exec, a ping) behind one frame for more than a few milliseconds.
 */
export const AGENT_MAX_FRAME_SIZE = 256 * 1024;

export const AGENT_PATHS = {
  health: "/v1/health",
  identity: "/v1/identity",
  exec: "/v1/exec",
} as const;

/**
 * JSON for an HTTP/2 header: non-ASCII characters escaped as \uXXXX. Node silently drops a header whose
 * value has characters beyond Latin-1, and garbles Latin-1 ones, so paths like "/tmp/日本" need this.
 */
export function headerJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** Header carrying the ExecSpec (as headerJson); the request body is the command's stdin. */
export const EXEC_SPEC_HEADER = "corral-exec-spec";

export interface AgentHealth {
  hostname: string;
  /** Seconds since the agent process started (the daemon reports nanoseconds, as Slicer does). */
  agent_uptime: number;
  agent_version: string;
  /** Seconds since the guest kernel booted. */
  system_uptime: number;
  /** True once this VM's userdata has finished (or there was none to run). */
  userdata_ran: boolean;
  userdata_exit_code: number | null;
  /** True once the host has delivered the VM's identity (hostname, keys, userdata). */
  identity_applied: boolean;
}

/** Delivered by the host right after it connects; applying it twice is harmless. */
export interface GuestIdentity {
  hostname: string;
  userdata?: string;
  /** Public keys to authorize: for `user` when given, else for root. */
  ssh_keys?: string[];
  /** A login user to create (with a home and a shell) and give the keys to. */
  user?: string;
  /** The host's clock (ms since the epoch): a restored guest's clock is stale and is set from it. */
  time_ms?: number;
  /** /etc/machine-id (32 lowercase hex digits): each clone of a template is its own machine. */
  machine_id?: string;
  /** Base64 bytes from the host's generator: mixed into the guest's pool, which is then rekeyed at once. */
  entropy?: string;
  /** The network interface's hardware address ("52:54:00:..."): a clone starts with its template's. */
  mac?: string;
  /**
   * eth0's address, route and resolvers (bridge and isolated modes): a clone starts with its template's (none),
   * so it is told its own. Absent: the network set at boot stays.
   */
  network?: { address: string; prefix_length: number; gateway: string; dns: string[] };
  /**
   * This machine is a template: apply the rest (so the code that does it is loaded and compiled before the
   * snapshot), but leave userdata unsettled: each clone runs its own.
   */
  template?: boolean;
}

export interface ExecSpec {
  cmd: string;
  args: string[];
  /** "KEY=VALUE" entries added to the guest's default environment. */
  env: string[];
  cwd?: string;
  uid?: number;
  gid?: number;
  /** A user of the guest by name: the agent looks up its uid and gid (and its home for $HOME). */
  user?: string;
  /** When set, `cmd` (with `args` appended, quoted) is a script run by this interpreter with `-lc`. */
  shell?: string;
  /** "base64" sends output chunks base64-encoded, with `encoding: "base64"` on their frames. */
  stdio: ExecStdio;
  /** When false the command's stdin is /dev/null and the request body is ignored. */
  stdin: boolean;
}

/**
 * One line of the NDJSON exec stream. Typed frames (`type`) for new clients; every frame also carries the
 * older untyped fields (`stdout`, `stderr`, `exit_code`) so clients that predate typed frames still work.
 */
export type ExecStdio = "text" | "base64";

export interface ExecFrame {
  type: "started" | "stdout" | "stderr" | "exit";
  timestamp: string;
  stdout: string;
  stderr: string;
  exit_code: number;
  pid?: number;
  started_at?: string;
  ended_at?: string;
  signal?: string;
  error?: string;
  encoding?: "base64";
}

export interface BufferedExecResult {
  stdout: string;
  stderr: string;
  exit_code: number;
  encoding?: "base64";
  pid?: number;
  started_at?: string;
  ended_at?: string;
  signal?: string;
  error?: string;
  /** Present and true when an output stream exceeded the buffered limit and was cut. */
  truncated?: boolean;
}

/** Conventional exit codes for commands that could not be started. */
export const EXIT_NOT_FOUND = 127;
export const EXIT_NOT_EXECUTABLE = 126;
