// POST /v1/shell: an interactive shell on a pty. The request body carries the client's frames (data,
// window size, shutdown; the daemon drops heartbeats), the response body the shell's: data frames, then one
// session-close frame whose payload is the exit status as JSON. Output and input both flow with
// backpressure: a full HTTP/2 stream pauses the pty, a full pty pauses the stream (HTTP/2 flow control
// then holds the daemon back).
//
// Ending: the shell exits (its remaining output is sent, then session close; other processes of its
// session get SIGHUP, as when a terminal closes), or the host sends shutdown, ends its side or goes away
// (every process of the shell's session is killed; the status is sent when the stream is still there).
import { readdirSync, readFileSync } from "node:fs";
import { constants as h2, type ServerHttp2Stream } from "node:http2";
import { decodeWindowSize, encodeFrame, FRAME_TYPE, FrameDecoder, SHELL_AGENT_PATH, SHELL_SPEC_HEADER, type ShellExitStatus } from "../protocol/shell.ts";
import { AgentRouteError, jsonHeader } from "./http.ts";
import { PtyProcess, type loadPtyAddon, type PtyExit } from "./pty.ts";
import type { AgentRouter } from "./router.ts";
import { planShell, validateShellSpec } from "./shell-plan.ts";

/** After the shell exited, how long its output may stay quiet before the session is closed anyway (a job
 * it left in the background may hold the terminal open). */
const OUTPUT_GRACE_MS = 100;

/** Processes whose session id is `sid` (from /proc), other than `sid` itself. */
export function sessionMembers(sid: number): number[] {
  const members: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return members;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === sid) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // "pid (comm) state ppid pgrp session ...": comm may hold anything, so count from the last ")".
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[3]) === sid) members.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return members;
}

type Addon = ReturnType<typeof loadPtyAddon>;

export function registerShellRoutes(router: AgentRouter, loadAddon: () => Addon): void {
  let addon: Addon | undefined;
  router.add("POST", SHELL_AGENT_PATH, async ({ stream, headers }) => {
    const plan = planShell(validateShellSpec(jsonHeader<unknown>(headers[SHELL_SPEC_HEADER], SHELL_SPEC_HEADER)));
    let pty: PtyProcess;
    try {
      addon ??= loadAddon();
      pty = new PtyProcess(addon, plan);
    } catch (err) {
      throw new AgentRouteError(500, "internal", `Cannot start ${JSON.stringify(plan.file)} on a terminal: ${(err as Error).message}`);
    }
    stream.respond({ [h2.HTTP2_HEADER_STATUS]: 200, [h2.HTTP2_HEADER_CONTENT_TYPE]: "application/octet-stream" });
    await runShellSession(pty, stream);
  });
}

/** Relays frames between the host's stream and the pty until the session is over. */
export async function runShellSession(pty: PtyProcess, stream: ServerHttp2Stream): Promise<void> {
  let killed = false;
  const killSession = (): void => {
    if (killed) return;
    killed = true;
    pty.signalSession("SIGKILL", sessionMembers(pty.pid));
  };

  // Host -> shell.
  const decoder = new FrameDecoder();
  let inputPaused = false;
  stream.on("data", (chunk: Buffer) => {
    let frames: ReturnType<typeof decoder.push>;
    try {
      frames = decoder.push(chunk);
    } catch {
      // A reset alone (RST_STREAM with INTERNAL_ERROR): stream.close(code) would end the answer first, and
      // the host would read a session that ended without its exit status instead of a failed one.
      stream.destroy(new Error("The host sent a malformed shell frame"));
      return;
    }
    for (const frame of frames) {
      if (frame.type === FRAME_TYPE.data) {
        if (!pty.write(frame.payload) && !inputPaused) {
          inputPaused = true;
          stream.pause();
          pty.once("drain", () => {
            inputPaused = false;
            stream.resume();
          });
        }
      } else if (frame.type === FRAME_TYPE.windowSize) {
        const size = decodeWindowSize(frame.payload);
        if (size) pty.resize(size.cols, size.rows);
      } else if (frame.type === FRAME_TYPE.shutdown) {
        killSession(); // the exit status still goes back
      }
    }
  });
  // The host stopped sending: the session is over (the status still goes back if it can).
  stream.on("end", killSession);
  // The host went away: nobody is left to read anything.
  stream.on("close", () => {
    killSession();
    pty.close();
  });

  // Shell -> host.
  let lastOutput = performance.now();
  let waitingForHost = false;
  pty.on("data", (chunk: Buffer) => {
    lastOutput = performance.now();
    if (stream.destroyed) return;
    if (!stream.write(encodeFrame(FRAME_TYPE.data, chunk))) {
      waitingForHost = true;
      pty.pause();
      stream.once("drain", () => {
        waitingForHost = false;
        lastOutput = performance.now();
        pty.resume();
      });
    }
  });

  const exit = await pty.exited;
  await outputDone(
    pty,
    () => lastOutput,
    () => waitingForHost && !stream.destroyed,
  );
  // What the shell left running in its session gets a hangup, as when a terminal closes.
  if (!killed) pty.signalSession("SIGHUP", sessionMembers(pty.pid));
  pty.close();
  if (!stream.destroyed && !stream.writableEnded) stream.end(encodeFrame(FRAME_TYPE.sessionClose, new TextEncoder().encode(JSON.stringify(exitStatus(exit)))));
}

function exitStatus(exit: PtyExit): ShellExitStatus {
  return exit.signal ? { exit_code: exit.code, signal: exit.signal } : { exit_code: exit.code };
}

/** Resolves once the pty's output has ended, or has been quiet for OUTPUT_GRACE_MS while nobody waits. */
function outputDone(pty: PtyProcess, lastOutput: () => number, busy: () => boolean): Promise<void> {
  return new Promise((resolve) => {
    if (pty.outputEnded) return resolve();
    const timer = setInterval(() => {
      if (busy() && !pty.outputEnded) return;
      if (pty.outputEnded || performance.now() - lastOutput() >= OUTPUT_GRACE_MS) done();
    }, OUTPUT_GRACE_MS / 4);
    const done = (): void => {
      clearInterval(timer);
      pty.off("end", done);
      resolve();
    };
    pty.once("end", done);
  });
}
