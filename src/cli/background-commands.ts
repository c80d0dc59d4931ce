// `corral vm bg exec|list|info|logs|kill|wait|remove`: background jobs in a VM, through the SDK.
import type { Command } from "commander";
import type { CorralClient } from "../sdk/index.ts";
import { addConnectionOptions, clientFor, type ConnectionFlags } from "./connection.ts";
import { action, collect, formatBytes, parseSize, printJson, printTable } from "./output.ts";

interface JsonFlag {
  json?: boolean;
}

/** Exit status of `vm bg wait` when the job is still running at the deadline (as timeout(1) does). */
const EXIT_TIMED_OUT = 124;

export function parseWholeNumber(text: string, flag: string): number {
  if (!/^\d+$/.test(text.trim())) throw new Error(`Invalid ${flag} ${JSON.stringify(text)}: use a whole number`);
  return Number(text);
}

async function withClient(flags: ConnectionFlags, use: (client: CorralClient) => Promise<void>): Promise<void> {
  const client = clientFor(flags);
  try {
    await use(client);
  } finally {
    await client.close();
  }
}

/** The `vm` command that vm-commands.ts registered: `bg` lives under it. */
function vmCommand(program: Command): Command {
  const vm = program.commands.find((c) => c.name() === "vm");
  if (!vm) throw new Error("registerBackgroundCommands needs the vm command: register the VM commands first");
  return vm;
}

export function registerBackgroundCommands(program: Command): void {
  const bg = vmCommand(program).command("bg").description("Background jobs: commands that run on in a VM after the request that started them");

  addConnectionOptions(
    bg
      .command("exec")
      .description("Start a command in the background; prints its exec id")
      .argument("<hostname>")
      .argument("<command...>", "the command and its arguments (put them after --)"),
  )
    .option("--uid <uid>", "run as this user id")
    .option("--gid <gid>", "run with this group id")
    .option("--cwd <dir>", "working directory in the guest")
    .option("-e, --env <KEY=VALUE>", "environment variable (repeatable)", collect)
    .option("--shell <shell>", "run the command line through this shell (e.g. /bin/sh)")
    .option("--ring <size>", "output kept for logs, e.g. 64K or 4M (default 1M)")
    .option("--json", "print JSON")
    .action(
      action(async (hostname: string, command: string[], flags: ConnectionFlags & JsonFlag & Record<string, string | string[] | boolean | undefined>) => {
        const [cmd, ...args] = command;
        if (!cmd) throw new Error("Name a command to run, e.g. corral vm bg exec sbox-1 -- make build");
        await withClient(flags, async (client) => {
          const launched = await client.bg.exec(hostname, {
            cmd,
            args,
            env: Array.isArray(flags.env) ? flags.env : [],
            cwd: flags.cwd as string | undefined,
            uid: flags.uid !== undefined ? parseWholeNumber(String(flags.uid), "--uid") : undefined,
            gid: flags.gid !== undefined ? parseWholeNumber(String(flags.gid), "--gid") : undefined,
            shell: flags.shell as string | undefined,
            stdio: "base64",
            ringBytes: flags.ring !== undefined ? parseSize(String(flags.ring)) : undefined,
          });
          if (flags.json) return printJson(launched);
          process.stdout.write(`${launched.exec_id}\n`);
          process.stderr.write(`Started pid ${launched.pid} in ${hostname}. Follow it with: corral vm bg logs -f ${hostname} ${launched.exec_id}\n`);
        });
      }),
    );

  addConnectionOptions(bg.command("list").alias("ls").description("List a VM's background jobs").argument("<hostname>"))
    .option("--json", "print JSON")
    .action(
      action(async (hostname: string, flags: ConnectionFlags & JsonFlag) => {
        await withClient(flags, async (client) => {
          const jobs = await client.bg.list(hostname);
          if (flags.json) return printJson(jobs);
          if (jobs.length === 0) {
            process.stdout.write(`No background jobs in ${hostname}. Start one with: corral vm bg exec ${hostname} -- COMMAND\n`);
            return;
          }
          printTable(
            ["EXEC_ID", "PID", "STATE", "EXIT", "OUTPUT", "STARTED", "COMMAND"],
            jobs.map((j) => [
              j.exec_id,
              String(j.pid),
              j.state,
              j.exit_code === undefined ? "-" : `${j.exit_code}${j.signal ? ` (${j.signal})` : ""}`,
              `${formatBytes(j.bytes_written)}${j.bytes_dropped ? ` (${formatBytes(j.bytes_dropped)} dropped)` : ""}`,
              j.started_at,
              [j.command, ...j.args].join(" "),
            ]),
          );
        });
      }),
    );

  addConnectionOptions(bg.command("info").description("Show one background job").argument("<hostname>").argument("<exec-id>"))
    .option("--json", "print JSON")
    .action(
      action(async (hostname: string, execId: string, flags: ConnectionFlags & JsonFlag) => {
        await withClient(flags, async (client) => {
          const job = await client.bg.info(hostname, execId);
          if (flags.json) return printJson(job);
          const outcome = job.state === "running" ? "running" : `exited with ${job.exit_code}${job.signal ? ` (${job.signal})` : ""} at ${job.ended_at}`;
          process.stdout.write(`${job.exec_id} pid ${job.pid}: ${[job.command, ...job.args].join(" ")}\n  ${outcome}; started ${job.started_at}\n`);
          process.stdout.write(`  output ${job.bytes_written} bytes, ${job.bytes_dropped} dropped; ring ${job.ring_bytes} bytes; next frame id ${job.next_id}\n`);
        });
      }),
    );

  addConnectionOptions(bg.command("logs").description("Print a background job's output (stdout and stderr to ours)").argument("<hostname>").argument("<exec-id>"))
    .option("-f, --follow", "keep printing until the job exits")
    .option("--from-id <id>", "only frames after this id (resume an earlier read)")
    .option("--json", "print the frames as NDJSON")
    .action(
      action(async (hostname: string, execId: string, flags: ConnectionFlags & JsonFlag & { follow?: boolean; fromId?: string }) => {
        await withClient(flags, async (client) => {
          const fromId = flags.fromId !== undefined ? parseWholeNumber(flags.fromId, "--from-id") : undefined;
          for await (const frame of client.bg.logs(hostname, execId, { follow: flags.follow, fromId })) {
            if (flags.json) process.stdout.write(`${JSON.stringify(frame)}\n`);
            else if (frame.type === "gap") process.stderr.write(`corral: ${frame.message}\n`);
            else if (frame.type === "stdout" || frame.type === "stderr") {
              const text = frame[frame.type];
              const bytes = frame.encoding === "base64" ? Buffer.from(text, "base64") : Buffer.from(text);
              (frame.type === "stdout" ? process.stdout : process.stderr).write(bytes);
            } else if (frame.type === "exit" && frame.error) process.stderr.write(`corral: ${frame.error}\n`);
          }
        });
      }),
    );

  addConnectionOptions(bg.command("kill").description("Signal a background job (TERM, then KILL after the grace)").argument("<hostname>").argument("<exec-id>"))
    .option("-s, --signal <signal>", "signal name or number", "TERM")
    .option("--grace-ms <ms>", "milliseconds before KILL follows (default 5000)")
    .option("--json", "print JSON")
    .action(
      action(async (hostname: string, execId: string, flags: ConnectionFlags & JsonFlag & { signal: string; graceMs?: string }) => {
        await withClient(flags, async (client) => {
          const signal = /^\d+$/.test(flags.signal) ? Number(flags.signal) : flags.signal;
          const graceMs = flags.graceMs !== undefined ? parseWholeNumber(flags.graceMs, "--grace-ms") : undefined;
          const result = await client.bg.kill(hostname, execId, { signal, graceMs });
          if (flags.json) return printJson(result);
          process.stdout.write(result.signal_sent ? `Sent ${result.signal_sent} to ${result.exec_id} (pid ${result.pid})\n` : `${result.exec_id} had already exited\n`);
        });
      }),
    );

  addConnectionOptions(
    bg.command("wait").description("Wait for a background job to exit; exits with its exit code (124 if still running)").argument("<hostname>").argument("<exec-id>"),
  )
    .option("--timeout <seconds>", "give up after this many seconds", "30")
    .option("--json", "print JSON")
    .action(
      action(async (hostname: string, execId: string, flags: ConnectionFlags & JsonFlag & { timeout: string }) => {
        await withClient(flags, async (client) => {
          const result = await client.bg.wait(hostname, execId, parseWholeNumber(flags.timeout, "--timeout"));
          if (flags.json) printJson(result);
          else if (result.timed_out) process.stderr.write(`corral: ${execId} is still running after ${flags.timeout}s\n`);
          else process.stdout.write(`${execId} exited with ${result.exit_code}${result.signal ? ` (${result.signal})` : ""}\n`);
          process.exitCode = result.timed_out ? EXIT_TIMED_OUT : (result.exit_code ?? 0);
        });
      }),
    );

  addConnectionOptions(
    bg.command("remove").alias("rm").description("Remove background jobs with their logs (running ones are killed)").argument("<hostname>").argument("<exec-id...>"),
  )
    .option("--json", "print JSON")
    .action(
      action(async (hostname: string, execIds: string[], flags: ConnectionFlags & JsonFlag) => {
        await withClient(flags, async (client) => {
          const results = [];
          for (const execId of execIds) {
            results.push(await client.bg.remove(hostname, execId));
            if (!flags.json) process.stdout.write(`Removed ${execId}\n`);
          }
          if (flags.json) printJson(results);
        });
      }),
    );
}
