// Runs one command for the host and reports it as typed frames: started, stdout/stderr chunks, exit.
// Output flows with backpressure: when the host stops reading, the command's pipes are paused.
import { spawn, type ChildProcess } from "node:child_process";
import { statSync } from "node:fs";
import { StringDecoder } from "node:string_decoder";
import type { Readable } from "node:stream";
import { constants as osConstants } from "node:os";
import { EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, type ExecFrame, type ExecSpec } from "../protocol/agent.ts";
import { guestEnvironment } from "./users.ts";

export interface FrameSink {
  /** Returns false when the consumer is full; `drain` will follow. */
  write(frame: ExecFrame): boolean;
  once(event: "drain", listener: () => void): unknown;
}

/** How long output may still arrive after the command exited before the exit frame is sent anyway. */
const PIPE_GRACE_MS = 250;

function frame(type: ExecFrame["type"], fields: Partial<ExecFrame> = {}): ExecFrame {
  return { type, timestamp: new Date().toISOString(), stdout: "", stderr: "", exit_code: 0, ...fields };
}

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * The argv to spawn. Without a shell: the command itself with its arguments, no expansion. With a shell
 * (Slicer's convention): `cmd` is a script run by `SHELL -lc`, and any `args` are appended to it quoted.
 */
export function commandLine(spec: ExecSpec): { file: string; args: string[] } {
  if (spec.shell) return { file: spec.shell, args: ["-lc", [spec.cmd, ...spec.args.map(shellQuote)].join(" ")] };
  return { file: spec.cmd, args: spec.args };
}

function startFailure(err: NodeJS.ErrnoException, file: string): { code: number; message: string } {
  if (err.code === "ENOENT") return { code: EXIT_NOT_FOUND, message: `Command not found: ${JSON.stringify(file)}` };
  if (err.code === "EACCES") return { code: EXIT_NOT_EXECUTABLE, message: `Command is not executable: ${JSON.stringify(file)}` };
  return { code: EXIT_NOT_EXECUTABLE, message: `Cannot start ${JSON.stringify(file)}: ${err.message}` };
}

function signalNumber(name: NodeJS.Signals): number {
  return (osConstants.signals as Record<string, number>)[name] ?? 0;
}

/**
 * Runs `spec`, writing frames to `sink` until the exit frame. `stdin` is piped to the command when the spec
 * asks for it. Aborting `signal` (the host went away) kills the command's whole process group.
 *
 * Output is pulled from the pipes (async iteration), never pushed: Node resumes paused "data" streams when
 * a child exits, which would bypass backpressure for the last of its output.
 */
export async function runExec(spec: ExecSpec, stdin: Readable, sink: FrameSink, signal: AbortSignal): Promise<void> {
  const { file, args } = commandLine(spec);
  const finish = (fields: Partial<ExecFrame>): void => {
    sink.write(frame("exit", { ended_at: new Date().toISOString(), ...fields }));
  };
  if (spec.cwd !== undefined && !isDirectory(spec.cwd)) {
    stdin.resume();
    return finish({ exit_code: EXIT_NOT_FOUND, error: `Working directory does not exist: ${JSON.stringify(spec.cwd)}` });
  }

  let child: ChildProcess;
  try {
    child = spawn(file, args, {
      cwd: spec.cwd,
      env: guestEnvironment(spec.uid ?? 0, spec.env),
      uid: spec.uid,
      gid: spec.gid ?? (spec.uid !== undefined ? spec.uid : undefined),
      detached: true, // its own process group, so the whole tree can be killed
      stdio: [spec.stdin ? "pipe" : "ignore", "pipe", "pipe"],
    });
  } catch (err) {
    stdin.resume();
    const failure = startFailure(err as NodeJS.ErrnoException, file);
    return finish({ exit_code: failure.code, error: failure.message });
  }
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once("exit", (code, name) => resolve([code, name])));
  const startError = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
    child.once("spawn", () => resolve(undefined));
    child.once("error", (err: NodeJS.ErrnoException) => resolve(err));
  });
  if (startError) {
    stdin.resume();
    const failure = startFailure(startError, file);
    return finish({ exit_code: failure.code, error: failure.message });
  }
  child.on("error", () => undefined); // after a successful start, failures show in the exit status

  sink.write(frame("started", { pid: child.pid, started_at: new Date().toISOString() }));
  if (spec.stdin && child.stdin) {
    child.stdin.on("error", () => undefined); // the command may exit without reading its input
    stdin.pipe(child.stdin);
  } else {
    stdin.resume();
  }

  const killGroup = (): void => {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  };
  if (signal.aborted) killGroup();
  else signal.addEventListener("abort", killGroup, { once: true });

  let lastActivity = performance.now();
  let waitingForDrain = 0;
  const aborted = signal.aborted ? Promise.resolve() : new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
  const drained = (): Promise<void> => Promise.race([new Promise<void>((resolve) => sink.once("drain", () => resolve())), aborted]);
  const pump = async (stream: Readable | null, type: "stdout" | "stderr"): Promise<void> => {
    if (!stream) return;
    const base64 = spec.stdio === "base64";
    const decoder = new StringDecoder("utf8");
    const emit = async (payload: string): Promise<void> => {
      lastActivity = performance.now();
      if (payload.length === 0) return;
      const fields: Partial<ExecFrame> = base64 ? { [type]: payload, encoding: "base64" } : { [type]: payload };
      if (!sink.write(frame(type, fields))) {
        waitingForDrain++;
        await drained();
        waitingForDrain--;
        lastActivity = performance.now();
      }
    };
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) await emit(base64 ? chunk.toString("base64") : decoder.write(chunk));
    } catch {
      // destroyed after the grace period, or the process group was killed
    }
    if (!base64) await emit(decoder.end());
  };
  const pumps = Promise.all([pump(child.stdout, "stdout"), pump(child.stderr, "stderr")]);

  const [code, signalName] = await exited;
  // A background process the command started may still hold the pipes open (`sh -c "server &"`): once
  // nothing has arrived for PIPE_GRACE_MS, and we are not merely waiting for the host to read, stop reading.
  let pumping = true;
  const pumped = pumps.then(() => {
    pumping = false;
  });
  while (pumping) {
    // Wakes as soon as the pipes close (the usual case), else checks again shortly.
    await Promise.race([pumped, new Promise((resolve) => setTimeout(resolve, PIPE_GRACE_MS / 5))]);
    if (pumping && waitingForDrain === 0 && performance.now() - lastActivity >= PIPE_GRACE_MS) {
      child.stdout?.destroy();
      child.stderr?.destroy();
    }
  }
  await pumps;
  signal.removeEventListener("abort", killGroup);
  if (signalName) finish({ exit_code: 128 + signalNumber(signalName), signal: signalName });
  else finish({ exit_code: code ?? 0 });
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
