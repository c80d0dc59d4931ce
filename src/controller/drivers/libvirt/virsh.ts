// One `virsh` call to one libvirt host: `virsh -c URI --quiet ARGS…` as a child process (never a shell), with a
// deadline and a bound on what it may print, its failure read into the controller's error codes. virsh is
// libvirt's own client: the URI's transport (a unix socket, ssh, TLS) is libvirt's business, and so is its
// protocol. A call costs a process and a connection (~30 ms on this machine for qemu:///, more through ssh:
// docs/controller.md "libvirt hosts" has the numbers); the driver makes few calls per report.
import { spawn } from "node:child_process";
import { CorralError, quote } from "../../../protocol/errors.ts";

/** A call that does not end in this long is ended, and the host taken as unreachable for it. */
export const VIRSH_TIMEOUT_MS = 20_000;
/** More output than this is not an answer the driver can use (a domain's XML is a few KiB). */
export const VIRSH_MAX_OUTPUT_BYTES = 4 * 1024 * 1024;

export interface VirshOptions {
  timeoutMs?: number;
  maxOutputBytes?: number;
  /** The program to run (tests may name another virsh). */
  binary?: string;
}

/** What a virsh call said when it failed: its exit status and its error lines. */
export class VirshFailure extends Error {
  constructor(
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`virsh ${args[0] ?? ""} failed (exit ${exitCode ?? "signal"}): ${libvirtSentence(stderr) || "no message"}`);
    this.name = "VirshFailure";
  }
}

/**
 * libvirt's sentence out of virsh's error lines: the last `error: …` line, which carries the reason (the first
 * one says only which command failed), without the prefix.
 */
export function libvirtSentence(stderr: string): string {
  const lines = stderr
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "");
  const errors = lines.filter((line) => line.startsWith("error: ")).map((line) => line.slice("error: ".length));
  return (errors.at(-1) ?? lines.at(-1) ?? "").slice(0, 500);
}

/** Does libvirt say that it could not reach its daemon (or the machine it runs on)? */
const UNREACHABLE = [
  /failed to connect to the hypervisor/i,
  /unable to connect to server/i,
  /cannot recv data/i,
  /End of file while reading data/i,
  /Failed to connect socket/i,
  /no connection driver available/i,
  /Connection refused/i,
  /Permission denied \(publickey/i,
  /Host key verification failed/i,
  /Could not resolve hostname/i,
  /Connection reset by peer/i,
  /client socket is closed/i,
];
const NOT_FOUND = [/failed to get domain/i, /Domain not found/i, /no domain with matching/i];
/** The domain's state refuses the action: starting a running one, stopping one that does not run. */
const CONFLICT = [/Requested operation is not valid/i, /domain is already active/i, /domain is not running/i, /Operation not supported/i];

/**
 * A virsh failure as the controller answers it: libvirt's daemon out of reach → 502 `host_unreachable`; no
 * such domain → 404 `vm_not_found`; an action the domain's state refuses → 409 `conflict` with libvirt's
 * sentence; anything else → 502 `host_bad_answer`, libvirt's sentence kept.
 */
export function virshError(hostId: string, failure: VirshFailure, domain?: string): CorralError {
  const sentence = libvirtSentence(failure.stderr);
  const said = sentence === "" ? "" : `: ${sentence}`;
  if (UNREACHABLE.some((re) => re.test(failure.stderr))) return new CorralError("host_unreachable", `Host ${quote(hostId)} did not answer (libvirt${said})`, { cause: failure });
  if (domain !== undefined && NOT_FOUND.some((re) => re.test(failure.stderr)))
    return new CorralError("vm_not_found", `VM ${quote(domain)} not found on host ${quote(hostId)}: libvirt has no domain of that name`, { cause: failure });
  if (domain !== undefined && CONFLICT.some((re) => re.test(failure.stderr)))
    return new CorralError("conflict", `Cannot ${failure.args[0] ?? "act on"} VM ${quote(domain)} on host ${quote(hostId)}${said}`, { cause: failure });
  return new CorralError("host_bad_answer", `Host ${quote(hostId)} refused virsh ${failure.args[0] ?? ""}${said}`, { cause: failure });
}

/** virsh against one connection URI. */
export class Virsh {
  private readonly timeoutMs: number;
  private readonly maxOutputBytes: number;
  private readonly binary: string;

  constructor(
    private readonly hostId: string,
    private readonly connectUri: string,
    options: VirshOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? VIRSH_TIMEOUT_MS;
    this.maxOutputBytes = options.maxOutputBytes ?? VIRSH_MAX_OUTPUT_BYTES;
    this.binary = options.binary ?? "virsh";
  }

  /**
   * virsh's standard output for `args`; a failure is a CorralError (see virshError), `domain` naming the
   * domain the call is about so that "no such domain" and state refusals are told apart from host failures.
   */
  async run(args: readonly string[], domain?: string): Promise<string> {
    try {
      return await this.spawn(args);
    } catch (err) {
      if (err instanceof VirshFailure) throw virshError(this.hostId, err, domain);
      throw err;
    }
  }

  private spawn(args: readonly string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      // Its own process group, so that the deadline also ends what virsh started (ssh for qemu+ssh), and no
      // terminal: ssh must never ask for a password. LC_ALL=C: libvirt's sentences are matched in English.
      const child = spawn(this.binary, ["-c", this.connectUri, "--quiet", ...args], {
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
        env: { ...process.env, LC_ALL: "C", LANG: "C" },
      });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let outBytes = 0;
      let errBytes = 0;
      let ended: CorralError | null = null;
      const end = (why: CorralError) => {
        if (ended) return;
        ended = why;
        try {
          if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
        } catch {
          // Already gone.
        }
      };
      const timer = setTimeout(
        () => end(new CorralError("host_unreachable", `Host ${quote(this.hostId)} did not answer virsh ${args[0] ?? ""} in ${Math.round(this.timeoutMs / 1000)} s`)),
        this.timeoutMs,
      );
      child.stdout.on("data", (chunk: Buffer) => {
        outBytes += chunk.length;
        if (outBytes > this.maxOutputBytes)
          end(new CorralError("host_bad_answer", `Host ${quote(this.hostId)} answered virsh ${args[0] ?? ""} with more than ${this.maxOutputBytes} bytes`));
        else out.push(chunk);
      });
      child.stderr.on("data", (chunk: Buffer) => {
        // Only the last lines carry libvirt's reason: keep 64 KiB of them.
        errBytes += chunk.length;
        if (errBytes <= 64 * 1024) err.push(chunk);
      });
      child.on("error", (error) => {
        clearTimeout(timer);
        reject(new CorralError("host_unreachable", `Cannot run virsh for host ${quote(this.hostId)}: ${error.message} (Debian's libvirt-clients provides it)`, { cause: error }));
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        if (ended) return reject(ended);
        if (code === 0) return resolve(Buffer.concat(out).toString("utf8"));
        reject(new VirshFailure(args, code, Buffer.concat(err).toString("utf8")));
      });
    });
  }
}
