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
 */
export function runExec(spec: ExecSpec, stdin: Readable, sink: FrameSink, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const { file, args } = commandLine(spec);
    const finish = (fields: Partial<ExecFrame>): void => {
      sink.write(frame("exit", { ended_at: new Date().toISOString(), ...fields }));
      resolve();
    };
    if (spec.cwd !== undefined) {
      let isDir = false;
      try {
        isDir = statSync(spec.cwd).isDirectory();
      } catch {
        isDir = false;
      }
      if (!isDir) return finish({ exit_code: EXIT_NOT_FOUND, error: `Working directory does not exist: ${JSON.stringify(spec.cwd)}` });
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
      const failure = startFailure(err as NodeJS.ErrnoException, file);
      return finish({ exit_code: failure.code, error: failure.message });
    }

    let started = false;
    const killGroup = (): void => {
      if (child.pid !== undefined && child.exitCode === null) {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    };
    const onAbort = (): void => killGroup();
    signal.addEventListener("abort", onAbort, { once: true });

    child.on("spawn", () => {
      started = true;
      sink.write(frame("started", { pid: child.pid, started_at: new Date().toISOString() }));
      if (spec.stdin && child.stdin) {
        child.stdin.on("error", () => undefined); // the command may exit without reading its input
        stdin.pipe(child.stdin);
      } else {
        stdin.resume();
      }
    });
    child.on("error", (err: NodeJS.ErrnoException) => {
      if (started) return; // errors after spawn show up as the exit status
      signal.removeEventListener("abort", onAbort);
      const failure = startFailure(err, file);
      finish({ exit_code: failure.code, error: failure.message });
    });

    const paused = new Set<Readable>();
    const forward = (stream: Readable | null, type: "stdout" | "stderr"): void => {
      if (!stream) return;
      const base64 = spec.stdio === "base64";
      const decoder = new StringDecoder("utf8");
      const emit = (payload: string): void => {
        if (payload.length === 0) return;
        const fields: Partial<ExecFrame> = base64 ? { [type]: payload, encoding: "base64" } : { [type]: payload };
        if (!sink.write(frame(type, fields))) {
          // Pause both pipes until the host catches up; resume them together on drain.
          if (paused.size === 0) {
            sink.once("drain", () => {
              for (const s of paused) s.resume();
              paused.clear();
            });
          }
          stream.pause();
          paused.add(stream);
        }
      };
      stream.on("data", (chunk: Buffer) => emit(base64 ? chunk.toString("base64") : decoder.write(chunk)));
      stream.on("end", () => {
        if (!base64) emit(decoder.end());
      });
    };
    forward(child.stdout, "stdout");
    forward(child.stderr, "stderr");

    // Finish on "close" (all output read), or shortly after "exit" when a background process the command
    // started still holds the pipes open: `sh -c "server &"` must not keep the request open forever.
    let finished = false;
    const complete = (code: number | null, signalName: NodeJS.Signals | null): void => {
      if (finished || !started) return;
      finished = true;
      signal.removeEventListener("abort", onAbort);
      if (signalName) finish({ exit_code: 128 + signalNumber(signalName), signal: signalName });
      else finish({ exit_code: code ?? 0 });
    };
    child.on("close", complete);
    child.on("exit", (code, signalName) => {
      setTimeout(() => {
        if (finished) return;
        child.stdout?.destroy();
        child.stderr?.destroy();
        complete(code, signalName);
      }, PIPE_GRACE_MS).unref();
    });
  });
}
