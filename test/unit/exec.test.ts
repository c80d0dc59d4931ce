import { test, describe, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { EventEmitter } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { commandLine, runExec, shellQuote, type FrameSink } from "../../src/guest/exec.ts";
import { GUEST_PATH } from "../../src/guest/users.ts";
import type { ExecFrame, ExecSpec } from "../../src/protocol/agent.ts";

const dir = await mkdtemp(join(tmpdir(), "corral-exec-test-"));
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

function spec(fields: Partial<ExecSpec> & { cmd: string }): ExecSpec {
  return { args: [], env: [], stdio: "text", stdin: false, ...fields };
}

/** A sink that accepts everything. */
class Collector implements FrameSink {
  readonly frames: ExecFrame[] = [];
  private readonly events = new EventEmitter();

  write(frame: ExecFrame): boolean {
    this.frames.push(frame);
    return this.accept(frame);
  }

  once(event: "drain", listener: () => void): unknown {
    return this.events.once(event, listener);
  }

  drain(): void {
    this.events.emit("drain");
  }

  drainListeners(): number {
    return this.events.listenerCount("drain");
  }

  protected accept(_frame: ExecFrame): boolean {
    return true;
  }

  types(): string[] {
    return this.frames.map((f) => f.type);
  }

  text(type: "stdout" | "stderr"): string {
    return this.frames
      .filter((f) => f.type === type)
      .map((f) => f[type])
      .join("");
  }

  bytes(type: "stdout" | "stderr"): Buffer {
    return Buffer.concat(this.frames.filter((f) => f.type === type).map((f) => Buffer.from(f[type], "base64")));
  }

  exit(): ExecFrame {
    const last = this.frames.at(-1);
    assert.equal(last?.type, "exit", `the last frame is the exit frame: ${JSON.stringify(this.frames)}`);
    return last as ExecFrame;
  }
}

async function run(s: ExecSpec, options: { stdin?: Readable; sink?: Collector; signal?: AbortSignal } = {}): Promise<Collector> {
  const sink = options.sink ?? new Collector();
  await runExec(s, options.stdin ?? Readable.from([]), sink, options.signal ?? new AbortController().signal);
  return sink;
}

/** Live (not zombie) processes whose process group is `pgid`. */
function groupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (fields[0] !== "Z" && Number(fields[2]) === pgid) members.push(Number(entry));
  }
  return members;
}

function killGroup(pgid: number | undefined): void {
  if (pgid === undefined) return;
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // gone
  }
}

describe("shellQuote", { timeout: 20_000 }, () => {
  test("leaves words made of safe characters alone", () => {
    for (const word of ["abc", "ABC123", "a-b_c.d/e:f,g@h%i+j=k", "/usr/bin/env", "--flag=value"]) assert.equal(shellQuote(word), word);
  });

  test("single-quotes everything else, escaping single quotes", () => {
    assert.equal(shellQuote(""), "''");
    assert.equal(shellQuote("a b"), "'a b'");
    assert.equal(shellQuote("$HOME"), "'$HOME'");
    assert.equal(shellQuote("it's"), "'it'\\''s'");
    assert.equal(shellQuote("'"), "''\\'''");
    assert.equal(shellQuote("*"), "'*'");
    assert.equal(shellQuote("a\nb"), "'a\nb'");
    assert.equal(shellQuote("é"), "'é'");
  });

  test("a real shell reads every quoted word back unchanged", () => {
    const words = [
      "",
      "plain",
      "two words",
      "it's",
      "'",
      "''",
      '"double"',
      "$HOME $(id) `id`",
      "back\\slash",
      "*?[a]",
      "tab\there",
      "new\nline",
      "semi;colon|pipe&amp",
      "~user",
      "é €",
      "-n",
    ];
    const script = `for w in ${words.map(shellQuote).join(" ")}; do printf '%s\\0' "$w"; done`;
    const out = spawnSync("/bin/sh", ["-c", script], { encoding: "utf8" });
    assert.equal(out.status, 0, out.stderr);
    assert.deepEqual(out.stdout.split("\0").slice(0, -1), words);
  });
});

describe("commandLine", { timeout: 20_000 }, () => {
  test("without a shell runs the command directly with its arguments", () => {
    assert.deepEqual(commandLine(spec({ cmd: "/bin/echo", args: ["a b", "$HOME"] })), { file: "/bin/echo", args: ["a b", "$HOME"] });
    assert.deepEqual(commandLine(spec({ cmd: "ls" })), { file: "ls", args: [] });
  });

  test("an empty shell counts as no shell", () => {
    assert.deepEqual(commandLine(spec({ cmd: "ls", args: ["-l"], shell: "" })), { file: "ls", args: ["-l"] });
  });

  test("with a shell the command is a script run by SHELL -lc, with the arguments appended quoted", () => {
    assert.deepEqual(commandLine(spec({ cmd: "echo $HOME", shell: "/bin/bash" })), { file: "/bin/bash", args: ["-lc", "echo $HOME"] });
    assert.deepEqual(commandLine(spec({ cmd: "printf '%s\\n'", args: ["a b", "it's", "$X", "plain"], shell: "/bin/sh" })), {
      file: "/bin/sh",
      args: ["-lc", "printf '%s\\n' 'a b' 'it'\\''s' '$X' plain"],
    });
  });
});

describe("runExec", { timeout: 20_000 }, () => {
  test("sends started, then output, then exit, with every frame fully populated", async () => {
    const sink = await run(spec({ cmd: "/bin/sh", args: ["-c", "echo out; echo err >&2; exit 5"] }));
    const types = sink.types();
    assert.equal(types[0], "started");
    assert.equal(types.at(-1), "exit");
    assert.equal(types.filter((t) => t === "started").length, 1);
    assert.equal(types.filter((t) => t === "exit").length, 1);
    assert.deepEqual(new Set(types.slice(1, -1)), new Set(["stdout", "stderr"]));
    assert.equal(sink.text("stdout"), "out\n");
    assert.equal(sink.text("stderr"), "err\n");

    const started = sink.frames[0] as ExecFrame;
    assert.deepEqual(Object.keys(started).sort(), ["exit_code", "pid", "started_at", "stderr", "stdout", "timestamp", "type"]);
    assert.equal(typeof started.pid, "number");
    assert.ok((started.pid as number) > 0);
    assert.match(started.started_at as string, ISO);
    assert.deepEqual({ stdout: started.stdout, stderr: started.stderr, exit_code: started.exit_code }, { stdout: "", stderr: "", exit_code: 0 });

    for (const f of sink.frames) {
      assert.match(f.timestamp, ISO);
      if (f.type === "stdout") assert.equal(f.stderr, "");
      if (f.type === "stderr") assert.equal(f.stdout, "");
      if (f.type !== "exit") assert.equal(f.exit_code, 0);
      assert.equal(f.encoding, undefined);
    }

    const exit = sink.exit();
    assert.deepEqual(Object.keys(exit).sort(), ["ended_at", "exit_code", "stderr", "stdout", "timestamp", "type"]);
    assert.equal(exit.exit_code, 5);
    assert.equal(exit.stdout, "");
    assert.match(exit.ended_at as string, ISO);
    assert.ok(exit.ended_at! >= started.started_at!);
  });

  test("a clean exit reports exit code 0 and no signal or error", async () => {
    const exit = (await run(spec({ cmd: "true" }))).exit();
    assert.equal(exit.exit_code, 0);
    assert.equal(exit.signal, undefined);
    assert.equal(exit.error, undefined);
  });

  test("a command killed by a signal reports 128+n and the signal's name", async () => {
    const term = (await run(spec({ cmd: "/bin/sh", args: ["-c", "kill -TERM $$; sleep 5"] }))).exit();
    assert.equal(term.exit_code, 143);
    assert.equal(term.signal, "SIGTERM");
    const kill = (await run(spec({ cmd: "/bin/sh", args: ["-c", "kill -KILL $$; sleep 5"] }))).exit();
    assert.equal(kill.exit_code, 137);
    assert.equal(kill.signal, "SIGKILL");
  });

  test("a command that is not found gives exit 127 with an error and no started frame", async () => {
    const sink = await run(spec({ cmd: "corral-no-such-command", args: ["x"] }));
    assert.deepEqual(sink.types(), ["exit"]);
    const exit = sink.exit();
    assert.equal(exit.exit_code, 127);
    assert.equal(exit.error, 'Command not found: "corral-no-such-command"');
    assert.match(exit.ended_at as string, ISO);

    const absolute = (await run(spec({ cmd: join(dir, "missing", "tool") }))).exit();
    assert.equal(absolute.exit_code, 127);
    assert.equal(absolute.error, `Command not found: ${JSON.stringify(join(dir, "missing", "tool"))}`);
  });

  test("the command is looked up on the guest PATH, not the agent's", async () => {
    const bin = join(dir, "custom-bin");
    await mkdir(bin);
    await writeFile(join(bin, "corral-custom-tool"), "#!/bin/sh\necho custom\n", { mode: 0o755 });
    const withoutPath = (await run(spec({ cmd: "corral-custom-tool" }))).exit();
    assert.equal(withoutPath.exit_code, 127);
    const withPath = await run(spec({ cmd: "corral-custom-tool", env: [`PATH=${bin}:${GUEST_PATH}`] }));
    assert.equal(withPath.exit().exit_code, 0);
    assert.equal(withPath.text("stdout"), "custom\n");
  });

  test("a file that is not executable gives exit 126 with an error", async () => {
    const file = join(dir, "not-executable.sh");
    await writeFile(file, "#!/bin/sh\necho should not run\n");
    await chmod(file, 0o644);
    const sink = await run(spec({ cmd: file }));
    assert.deepEqual(sink.types(), ["exit"]);
    assert.equal(sink.exit().exit_code, 126);
    assert.equal(sink.exit().error, `Command is not executable: ${JSON.stringify(file)}`);

    const folder = (await run(spec({ cmd: dir }))).exit();
    assert.equal(folder.exit_code, 126);
    assert.equal(folder.error, `Command is not executable: ${JSON.stringify(dir)}`);
  });

  test("a missing working directory gives exit 127 with an error, and the command does not run", async () => {
    const marker = join(dir, "cwd-marker");
    const missing = join(dir, "no-such-dir");
    const sink = await run(spec({ cmd: "/bin/sh", args: ["-c", `touch ${marker}`], cwd: missing }));
    assert.deepEqual(sink.types(), ["exit"]);
    assert.equal(sink.exit().exit_code, 127);
    assert.equal(sink.exit().error, `Working directory does not exist: ${JSON.stringify(missing)}`);
    assert.throws(() => readFileSync(marker), { code: "ENOENT" });

    const file = join(dir, "a-file");
    await writeFile(file, "");
    const notDir = (await run(spec({ cmd: "pwd", cwd: file }))).exit();
    assert.equal(notDir.exit_code, 127);
    assert.equal(notDir.error, `Working directory does not exist: ${JSON.stringify(file)}`);
  });

  test("runs in the working directory given", async () => {
    const sink = await run(spec({ cmd: "pwd", cwd: dir }));
    assert.equal(sink.text("stdout"), `${dir}\n`);
  });

  test("applies env entries on top of the guest's default environment, not the agent's", async () => {
    process.env.CORRAL_EXEC_TEST_LEAK = "leaked";
    try {
      const sink = await run(
        spec({
          cmd: "/bin/sh",
          args: ["-c", 'printf "%s|%s|%s|%s|%s|%s|%s" "$FOO" "${EMPTY-unset}" "${NOEQ-unset}" "$HOME" "$LANG" "$PATH" "${CORRAL_EXEC_TEST_LEAK-unset}"'],
          env: ["FOO=bar=baz", "EMPTY=", "NOEQ", "=value", "LANG=en_US.UTF-8"],
        }),
      );
      assert.equal(sink.text("stdout"), `bar=baz||unset|/root|en_US.UTF-8|${GUEST_PATH}|unset`);
    } finally {
      delete process.env.CORRAL_EXEC_TEST_LEAK;
    }
  });

  test("runs as the uid given, with its gid and home by default", { skip: process.getuid?.() === 0 ? false : "needs root" }, async () => {
    const sink = await run(spec({ cmd: "/bin/sh", args: ["-c", 'echo "$(id -u) $(id -g) $HOME $USER"'], uid: 65534 }));
    assert.equal(sink.exit().exit_code, 0);
    assert.equal(sink.text("stdout"), "65534 65534 /nonexistent nobody\n");
  });

  test("with a shell, arguments reach the script as literal words", async () => {
    const sink = await run(spec({ cmd: "printf '%s\\n'", args: ["a b", "it's", "$HOME", "*"], shell: "/bin/sh" }));
    assert.equal(sink.exit().exit_code, 0);
    assert.equal(sink.text("stdout"), "a b\nit's\n$HOME\n*\n");
  });

  test("pipes the request body to the command when spec.stdin is set", async () => {
    const stdin = Readable.from([Buffer.from("hello\n"), Buffer.from([0xff, 0x00, 0xfe]), Buffer.from("world")]);
    const sink = await run(spec({ cmd: "cat", stdin: true, stdio: "base64" }), { stdin });
    assert.equal(sink.exit().exit_code, 0);
    assert.deepEqual(sink.bytes("stdout"), Buffer.concat([Buffer.from("hello\n"), Buffer.from([0xff, 0x00, 0xfe]), Buffer.from("world")]));
  });

  test("a command that exits without reading its stdin does not fail the exec", async () => {
    const stdin = new PassThrough();
    stdin.write(Buffer.alloc(256 * 1024, "x"));
    stdin.end();
    const sink = await run(spec({ cmd: "true", stdin: true }), { stdin });
    assert.equal(sink.exit().exit_code, 0);
    assert.equal(sink.exit().error, undefined);
  });

  test("without spec.stdin the command reads /dev/null and the request body is drained", async () => {
    const stdin = new PassThrough();
    const ended = new Promise<void>((resolve) => stdin.once("end", resolve));
    stdin.end("must not reach the command");
    const sink = await run(spec({ cmd: "/bin/sh", args: ["-c", "cat; echo done"] }), { stdin });
    assert.equal(sink.exit().exit_code, 0);
    assert.equal(sink.text("stdout"), "done\n");
    await Promise.race([ended, sleep(1000).then(() => assert.fail("the ignored stdin was never consumed"))]);
  });

  test('stdio "base64" frames carry encoding "base64" and decode to the exact bytes', async () => {
    const sink = await run(spec({ cmd: "/bin/sh", args: ["-c", "printf '\\377\\000\\200abc\\342\\202'; printf '\\376\\001' >&2"], stdio: "base64" }));
    assert.equal(sink.exit().exit_code, 0);
    assert.deepEqual(sink.bytes("stdout"), Buffer.from([0xff, 0x00, 0x80, 0x61, 0x62, 0x63, 0xe2, 0x82]));
    assert.deepEqual(sink.bytes("stderr"), Buffer.from([0xfe, 0x01]));
    for (const f of sink.frames) {
      if (f.type === "stdout" || f.type === "stderr") {
        assert.equal(f.encoding, "base64");
        assert.match(f[f.type], /^[A-Za-z0-9+/]+={0,2}$/);
      } else {
        assert.equal(f.encoding, undefined, `${f.type} frames carry no encoding`);
      }
    }
  });

  test("text mode does not corrupt a UTF-8 character split between reads", async () => {
    // The euro sign is E2 82 AC: the first two bytes, a pause, then the last.
    const sink = await run(spec({ cmd: "/bin/sh", args: ["-c", "printf 'x\\342\\202'; sleep 0.1; printf '\\254y'; printf '\\303' >&2; sleep 0.1; printf '\\251' >&2"] }));
    assert.equal(sink.text("stdout"), "x€y");
    assert.equal(sink.text("stderr"), "é");
    for (const f of sink.frames) assert.ok(!f.stdout.includes("\uFFFD") && !f.stderr.includes("\uFFFD"), JSON.stringify(f));
    assert.ok(
      sink.frames.every((f) => f.type !== "stdout" || f.stdout.length > 0),
      "no empty output frames",
    );
  });

  test("text mode turns a truncated UTF-8 sequence at the very end into U+FFFD", async () => {
    const sink = await run(spec({ cmd: "/bin/sh", args: ["-c", "printf 'a\\342\\202'"] }));
    assert.equal(sink.text("stdout"), "a\uFFFD");
    assert.equal(sink.types().at(-1), "exit");
  });

  test("a sink that returns false pauses the output until it emits drain", async () => {
    class Slow extends Collector {
      drained = false;
      readonly writesWhileFull: string[] = [];
      private full = false;
      protected override accept(frame: ExecFrame): boolean {
        if (frame.type !== "stdout") return true;
        if (this.full) this.writesWhileFull.push(frame.stdout);
        if (frame.stdout === "a") {
          this.full = true;
          setTimeout(() => {
            this.full = false;
            this.drained = true;
            this.drain();
          }, 250);
          return false;
        }
        return true;
      }
    }
    const sink = new Slow();
    // "b" is written 100 ms in, while the sink is full; the command keeps running until well after the drain.
    const started = performance.now();
    await run(spec({ cmd: "/bin/sh", args: ["-c", "printf a; sleep 0.1; printf b; sleep 0.4"] }), { sink });
    assert.ok(performance.now() - started >= 400);
    assert.equal(sink.text("stdout"), "ab");
    assert.deepEqual(sink.writesWhileFull, [], "nothing was written between write() returning false and drain");
    assert.equal(sink.drainListeners(), 0, "one drain listener, removed once it fired");
  });

  test("output is complete and in order through a sink that is full after every write", async () => {
    class AlwaysFull extends Collector {
      readonly writesWhileFull: number[] = [];
      private full = false;
      protected override accept(frame: ExecFrame): boolean {
        if (frame.type === "exit" || frame.type === "started") return true;
        if (this.full) this.writesWhileFull.push(this.frames.length);
        this.full = true;
        setImmediate(() => {
          this.full = false;
          this.drain();
        });
        return false;
      }
    }
    const sink = new AlwaysFull();
    // Long-running enough that the command is still writing while the sink is full.
    await run(spec({ cmd: "/bin/sh", args: ["-c", "seq 1 150000; seq 1 1000 >&2"] }), { sink });
    const expected = Array.from({ length: 150000 }, (_, i) => `${i + 1}\n`).join("");
    assert.equal(sink.exit().exit_code, 0);
    assert.equal(sink.text("stdout").length, expected.length);
    assert.equal(sink.text("stdout"), expected);
    assert.equal(sink.text("stderr"), Array.from({ length: 1000 }, (_, i) => `${i + 1}\n`).join(""));
    assert.ok(sink.frames.filter((f) => f.type === "stdout").length > 1);
  });

  // Node's ChildProcess resumes paused stdout/stderr when the command exits (flushStdio): output must be
  // pulled, not paused, or the tail is written while the sink is full.
  test("output still buffered when the command exits waits for drain too", async () => {
    class Full extends Collector {
      readonly writesWhileFull: string[] = [];
      private full = false;
      protected override accept(frame: ExecFrame): boolean {
        if (frame.type !== "stdout") return true;
        if (this.full) this.writesWhileFull.push(frame.stdout);
        if (frame.stdout === "a") {
          this.full = true;
          setTimeout(() => {
            this.full = false;
            this.drain();
          }, 150);
          return false;
        }
        return true;
      }
    }
    const sink = new Full();
    // The command writes "b" while the sink is full and exits at once.
    await run(spec({ cmd: "/bin/sh", args: ["-c", "printf a; sleep 0.05; printf b"] }), { sink });
    assert.equal(sink.text("stdout"), "ab");
    assert.deepEqual(sink.writesWhileFull, []);
  });

  // The pipe grace is for background processes holding the pipes, not for a host that reads slowly.
  test("a sink slower than the pipe grace still gets every byte before the exit frame", async () => {
    class Sluggish extends Collector {
      protected override accept(frame: ExecFrame): boolean {
        if (frame.type !== "stdout") return true;
        setTimeout(() => this.drain(), 350);
        return false;
      }
    }
    const sink = new Sluggish();
    await run(spec({ cmd: "/bin/sh", args: ["-c", "head -c 200000 /dev/zero"] }), { sink });
    assert.equal(sink.exit().exit_code, 0);
    assert.equal(sink.text("stdout").length, 200000);
  });

  test("aborting kills the whole process group and reports SIGKILL", async () => {
    const controller = new AbortController();
    let pgid: number | undefined;
    let membersBefore: number[] = [];
    class Watch extends Collector {
      protected override accept(frame: ExecFrame): boolean {
        if (frame.type === "started") pgid = frame.pid;
        if (frame.type === "stdout" && frame.stdout.includes("ready")) {
          membersBefore = groupMembers(pgid as number);
          controller.abort();
        }
        return true;
      }
    }
    const sink = new Watch();
    const started = performance.now();
    try {
      await run(spec({ cmd: "/bin/sh", args: ["-c", "sleep 100 & sleep 100 & echo ready; wait"] }), { sink, signal: controller.signal });
      assert.ok(performance.now() - started < 2000);
      assert.ok(membersBefore.length >= 3, `sh and both sleeps were in the group: ${JSON.stringify(membersBefore)}`);
      const exit = sink.exit();
      assert.equal(exit.exit_code, 137);
      assert.equal(exit.signal, "SIGKILL");
      const deadline = performance.now() + 1000;
      while (groupMembers(pgid as number).length > 0 && performance.now() < deadline) await sleep(10);
      assert.deepEqual(groupMembers(pgid as number), [], "every process of the group is gone");
    } finally {
      killGroup(pgid);
    }
  });

  test("a background child holding stdout does not keep the exec open beyond the pipe grace", async () => {
    let pgid: number | undefined;
    try {
      const started = performance.now();
      const sink = await run(spec({ cmd: "/bin/sh", args: ["-c", "sleep 30 & echo hi"] }));
      const elapsed = performance.now() - started;
      pgid = sink.frames[0]?.pid;
      assert.ok(elapsed >= 200 && elapsed < 1000, `finished after ${elapsed.toFixed(0)} ms`);
      assert.equal(sink.text("stdout"), "hi\n");
      assert.equal(sink.exit().exit_code, 0);
      assert.equal(sink.types().filter((t) => t === "exit").length, 1);
      // The background process is left running (a server the command started), in the command's own group.
      assert.equal(groupMembers(pgid as number).length, 1);
      await sleep(300);
      assert.equal(sink.types().filter((t) => t === "exit").length, 1, "no second exit frame later");
    } finally {
      killGroup(pgid);
    }
  });

  test("the command runs in its own process group", async () => {
    const sink = await run(spec({ cmd: "/bin/sh", args: ["-c", "cut -d' ' -f5 /proc/$$/stat"] }));
    assert.equal(Number(sink.text("stdout").trim()), sink.frames[0]?.pid);
    assert.notEqual(Number(sink.text("stdout").trim()), process.pid);
  });
});
