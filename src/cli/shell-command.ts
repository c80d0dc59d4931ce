// `corral vm shell HOST`: an interactive terminal in a VM through the daemon (no SSH, no network to the VM).
// On a terminal: raw mode, the window size follows ours, the terminal is restored on exit. With piped
// input: the input is typed into the shell, then Ctrl-D ends it. Our exit code is the shell's.
import { spawnSync } from "node:child_process";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import type { Command } from "commander";
import { addConnectionOptions, clientFor, type ConnectionFlags } from "./connection.ts";
import { action } from "./output.ts";

interface ShellFlags extends ConnectionFlags {
  uid?: string;
  gid?: string;
  shell?: string;
  cwd?: string;
}

const END_OF_INPUT = "\x04";
const PIPED_INPUT_WAIT_MS = 2000;
const KILL_LINE = "\x15";
const END_RETRY_MS = 500;
const END_RETRIES = 20;

function optionalId(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new Error(`Invalid --${name} ${JSON.stringify(value)}: use a number`);
  return Number(value);
}

async function runShell(hostname: string, flags: ShellFlags): Promise<void> {
  const { stdin, stdout } = process;
  const terminal = stdin.isTTY === true;
  const client = clientFor(flags);
  let restore = (): void => undefined;
  try {
    const session = await client.shell(hostname, {
      uid: optionalId(flags.uid, "uid"),
      gid: optionalId(flags.gid, "gid"),
      shell: flags.shell,
      cwd: flags.cwd,
      ...(stdout.isTTY ? { cols: stdout.columns, rows: stdout.rows } : {}),
    });

    if (terminal) {
      stdin.setRawMode(true);
      // libuv's raw mode keeps output post-processing (\n -> \r\n): the guest's terminal already did
      // that, and full-screen programs that move the cursor with \n need it off, as ssh has it.
      // setRawMode(false) (and node's exit) put back the terminal's original settings, this one included.
      spawnSync("stty", ["-opost"], { stdio: ["inherit", "ignore", "ignore"] });
      restore = () => {
        if (stdin.isTTY) stdin.setRawMode(false);
      };
      process.once("exit", restore);
    }
    const onResize = (): void => session.resize(stdout.columns, stdout.rows);
    if (stdout.isTTY) stdout.on("resize", onResize);
    // Without a terminal, Ctrl-C is ours: end the session (the shell is killed) rather than leave it.
    const onInterrupt = (): void => session.close();
    if (!terminal) process.once("SIGINT", onInterrupt);

    const startTyping = (): void => {
      stdin.on("data", (chunk: Buffer) => {
        if (!session.write(chunk)) {
          stdin.pause();
          void session.drained().then(() => stdin.resume());
        }
      });
      stdin.once("end", () => {
        if (!terminal) endInput();
      });
      stdin.resume();
    };
    // End of piped input is a Ctrl-D at the shell's prompt. It can land while the shell runs a command, with
    // the pty in canonical mode: the line discipline then keeps it as a NUL that the shell's line editor reads
    // later as a character, not as the end. So while the session stays open and quiet, clear the line (Ctrl-U)
    // and say Ctrl-D again.
    let lastOutputAt = performance.now();
    const endInput = (): void => {
      session.write(END_OF_INPUT);
      let tries = 0;
      const retry = setInterval(() => {
        if (performance.now() - lastOutputAt < END_RETRY_MS) return;
        if (++tries > END_RETRIES) return clearInterval(retry);
        session.write(`${KILL_LINE}${END_OF_INPUT}`);
      }, END_RETRY_MS);
      retry.unref();
      const stop = (): void => clearInterval(retry);
      void session.exit.then(stop, stop);
    };
    // Piped input waits for the shell's first output (its prompt): typed earlier, it lands while the pty is
    // still in canonical mode, where the final Ctrl-D becomes a NUL once the shell switches to line editing,
    // and the session never ends. A shell that prints nothing gets the input after a short wait anyway.
    let sawOutput!: () => void;
    const firstOutput = new Promise<void>((resolve) => (sawOutput = resolve));
    if (terminal) startTyping();
    else void Promise.race([firstOutput, sleep(PIPED_INPUT_WAIT_MS, undefined, { ref: false })]).then(startTyping);

    for await (const chunk of session) {
      sawOutput();
      lastOutputAt = performance.now();
      if (!stdout.write(chunk)) await once(stdout, "drain");
    }
    const exit = await session.exit;
    stdin.pause();
    stdout.off("resize", onResize);
    process.off("SIGINT", onInterrupt);
    restore();
    if (exit.code === null) {
      process.stderr.write(`\r\ncorral: the session ended: ${exit.reason || `WebSocket closed with code ${exit.closeCode}`}\n`);
      process.exitCode = 255;
    } else {
      process.exitCode = exit.code;
    }
  } finally {
    restore();
    await client.close();
  }
}

export function registerShellCommand(vm: Command): void {
  addConnectionOptions(vm.command("shell").description("Open an interactive shell in a VM (through the daemon: no SSH or network needed)").argument("<hostname>"))
    .option("--uid <uid>", "run as this user id (default root)")
    .option("--gid <gid>", "run with this group id")
    .option("--shell <shell>", "the shell to run (default: the user's login shell, else /bin/sh)")
    .option("--cwd <dir>", "working directory in the guest (default: the user's home)")
    .action(action(runShell));
}
