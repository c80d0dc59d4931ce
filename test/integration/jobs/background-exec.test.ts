// Background exec end to end: a real daemon, one real VM (TCG here), jobs living in its guest agent.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { request } from "undici";
import type { BackgroundInfo, JobLogFrame } from "../../../src/protocol/jobs.ts";
import { TestDaemon } from "../../helpers/daemon-process.ts";

const CORRAL = fileURLToPath(new URL("../../../corral", import.meta.url));

interface Answer {
  status: number;
  body: Record<string, unknown> & { error?: string; code?: string };
}

async function call(url: string, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Answer> {
  const response = await request(`${url}${path}`, { method: method as "GET", body, headers });
  const text = await response.body.text();
  const json = String(response.headers["content-type"] ?? "").includes("json");
  return { status: response.statusCode, body: json && text ? (JSON.parse(text) as Answer["body"]) : { text } };
}

function assertError(answer: Answer, status: number, code: string, message?: RegExp): void {
  assert.equal(answer.status, status, JSON.stringify(answer.body));
  assert.equal(answer.body.code, code);
  assert.equal(typeof answer.body.error, "string");
  if (message) assert.match(answer.body.error ?? "", message);
}

function stdoutText(frames: JobLogFrame[]): string {
  return frames
    .filter((f) => f.type === "stdout")
    .map((f) => (f.type === "stdout" ? (f.encoding === "base64" ? Buffer.from(f.stdout, "base64").toString() : f.stdout) : ""))
    .join("");
}

function corral(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(CORRAL, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe("background exec", { timeout: 900_000 }, () => {
  let daemon: TestDaemon;
  let host: string;

  const logs = async (execId: string, options: { follow?: boolean; fromId?: number } = {}): Promise<JobLogFrame[]> => {
    const frames: JobLogFrame[] = [];
    for await (const frame of daemon.client.bg.logs(host, execId, options)) frames.push(frame);
    return frames;
  };

  /** Whether a process of that pid runs in the guest (not a zombie). */
  const guestAlive = async (pid: number): Promise<boolean> => {
    const result = await daemon.client.execBuffered(host, { cmd: "sh", args: ["-c", `[ -d /proc/${pid} ] && ! grep -q '^State:.*Z' /proc/${pid}/status`] });
    return result.exit_code === 0;
  };

  before(async () => {
    daemon = await TestDaemon.create();
    await daemon.start();
    host = (await daemon.client.createNode("sbox", {}, { wait: "agent", timeout: "120s" })).hostname;
  });

  after(async () => {
    await daemon.dispose();
  });

  test("launch answers 201 at once with exec_id, pid, started_at and ring_bytes; list and info show the job", async () => {
    const started = performance.now();
    const answer = await call(daemon.url, "POST", `/vm/${host}/exec?background=true&cmd=sleep&args=600&stdio=base64`);
    assert.ok(performance.now() - started < 5000, "the answer does not wait for the command");
    assert.equal(answer.status, 201, JSON.stringify(answer.body));
    assert.deepEqual(Object.keys(answer.body).sort(), ["exec_id", "pid", "ring_bytes", "started_at"]);
    assert.match(String(answer.body.exec_id), /^ex_[0-9a-f]{16}$/);
    assert.ok(Number.isInteger(answer.body.pid) && (answer.body.pid as number) > 1);
    assert.ok(!Number.isNaN(Date.parse(String(answer.body.started_at))));
    assert.equal(answer.body.ring_bytes, 1024 * 1024, "1 MiB by default");
    const id = String(answer.body.exec_id);

    const list = await daemon.client.bg.list(host);
    const listed = list.find((j) => j.exec_id === id);
    assert.ok(listed, "the job is listed");
    assert.equal(listed.running, true);
    assert.equal(listed.state, "running");
    assert.equal(listed.command, "sleep");
    assert.deepEqual(listed.args, ["600"]);

    const info = await daemon.client.bg.info(host, id);
    assert.equal(info.pid, answer.body.pid);
    assert.equal(info.encoding, "base64");
    assert.equal(info.exit_code, undefined, "no exit code while running");
    assert.equal(await guestAlive(info.pid), true);
    await daemon.client.bg.remove(host, id);
  });

  test("a job outlives the request that started it and log readers that leave; follow streams until the exit frame", async () => {
    const job = await daemon.client.bg.exec(host, { cmd: "for i in 1 2 3 4 5 6; do echo tick$i; sleep 0.4; done", shell: "/bin/sh" });
    const reader = new AbortController();
    const early: JobLogFrame[] = [];
    for await (const frame of daemon.client.bg.logs(host, job.exec_id, { follow: true, signal: reader.signal })) {
      early.push(frame);
      if (frame.type === "stdout") {
        // Leave after the first line. Break as well as abort: on a loaded host the next line can already be
        // buffered in the stream, and the loop would be handed it before the abort is seen.
        reader.abort();
        break;
      }
    }
    // One frame holds what the guest read in one go: on a loaded host that can be two lines.
    assert.match(stdoutText(early), /^tick1\n(tick2\n)?$/);
    assert.equal((await daemon.client.bg.info(host, job.exec_id)).running, true, "the job runs on without its reader");

    const all = await logs(job.exec_id, { follow: true });
    assert.equal(all.at(-1)?.type, "exit", "follow ends with the exit frame");
    assert.equal(all.at(-1)?.exit_code, 0);
    assert.equal(stdoutText(all), "tick1\ntick2\ntick3\ntick4\ntick5\ntick6\n");
    assert.deepEqual(
      all.map((f) => f.id),
      all.map((_, i) => i + 1),
      "ids are 1, 2, 3, ... with nothing missing",
    );
    const info = await daemon.client.bg.info(host, job.exec_id);
    assert.equal(info.state, "exited");
    assert.equal(info.exit_code, 0);
    assert.equal(info.next_id, all.length + 1);
  });

  test("logs resumed with from_id give exactly the frames after it", async () => {
    const job = await daemon.client.bg.exec(host, { cmd: "sh", args: ["-c", "for i in $(seq 1 20); do echo line$i; echo err$i >&2; done; exit 7"] });
    const waited = await daemon.client.bg.wait(host, job.exec_id, 30);
    assert.equal(waited.exit_code, 7);
    const all = await logs(job.exec_id);
    assert.equal(all.at(-1)?.type, "exit");
    for (const cut of [1, 5, all.length - 1, all.length]) {
      assert.deepEqual(await logs(job.exec_id, { fromId: cut }), all.slice(cut), `from_id=${cut}`);
    }
    assert.deepEqual(await logs(job.exec_id, { fromId: 1000 }), [], "beyond the end: nothing (follow=false)");
    const raw = await request(`${daemon.url}/vm/${host}/exec/${job.exec_id}/logs?from_id=3`);
    assert.equal(raw.headers["content-type"], "application/x-ndjson");
    const text = await raw.body.text();
    assert.ok(text.endsWith("\n"), "every NDJSON line ends with a newline, the last too");
    assert.equal(JSON.parse(text.split("\n")[0] as string).id, 4);
  });

  test("a job that prints more than its ring shows a gap frame saying how much was dropped", async () => {
    const job = await daemon.client.bg.exec(host, { cmd: "head -c 100000 /dev/zero | tr '\\0' x; echo; echo tail-end", shell: "/bin/sh", ringBytes: 4096 });
    assert.equal(job.ring_bytes, 4096);
    await daemon.client.bg.wait(host, job.exec_id, 30);
    const frames = await logs(job.exec_id);
    const gap = frames[0];
    assert.ok(gap?.type === "gap", `the log starts with a gap: ${JSON.stringify(gap)}`);
    assert.ok(gap.dropped_bytes > 90_000 && gap.dropped_frames > 0, JSON.stringify(gap));
    assert.match(gap.message, /dropped/i);
    assert.equal(gap.id + 1, frames[1]?.id, "the gap stands for the ids before the first kept frame");
    const kept = stdoutText(frames.slice(1));
    assert.ok(kept.endsWith("x\ntail-end\n"), "the newest output is kept");
    assert.equal(gap.dropped_bytes + Buffer.byteLength(kept), 100_000 + "\ntail-end\n".length, "dropped plus kept is everything written");
    const info = await daemon.client.bg.info(host, job.exec_id);
    assert.equal(info.bytes_dropped, gap.dropped_bytes);
    assert.equal(info.bytes_written, 100_000 + "\ntail-end\n".length);
    assert.equal(frames.at(-1)?.type, "exit");
  });

  test("kill sends TERM, and KILL after grace_ms when the job ignores it; wait-exit returns the final state", async () => {
    const polite = await daemon.client.bg.exec(host, { cmd: "sleep", args: ["600"] });
    const killed = await daemon.client.bg.kill(host, polite.exec_id);
    assert.deepEqual(killed, { exec_id: polite.exec_id, pid: polite.pid, running: true, signal_sent: "SIGTERM" });
    const ended = await daemon.client.bg.wait(host, polite.exec_id, 20);
    assert.equal(ended.running, false);
    assert.equal(ended.timed_out, false);
    assert.equal(ended.signal, "SIGTERM");
    assert.equal(ended.exit_code, 143);
    assert.ok(ended.ended_at);

    const stubborn = await daemon.client.bg.exec(host, { cmd: "trap '' TERM; echo armed; while true; do sleep 1; done", shell: "/bin/sh" });
    for (let i = 0; i < 50 && !stdoutText(await logs(stubborn.exec_id)).includes("armed"); i++) await sleep(100);
    const sent = performance.now();
    const term = await daemon.client.bg.kill(host, stubborn.exec_id, { signal: "TERM", graceMs: 2000 });
    assert.equal(term.signal_sent, "SIGTERM");
    assert.equal((await daemon.client.bg.wait(host, stubborn.exec_id, 1)).timed_out, true, "TERM alone does not stop it");
    const final = await daemon.client.bg.wait(host, stubborn.exec_id, 30);
    const took = performance.now() - sent;
    assert.equal(final.signal, "SIGKILL");
    assert.equal(final.exit_code, 137);
    // Guest time runs faster than the host's under TCG here (about 1.35x), so the bound is loose.
    assert.ok(took >= 1200, `KILL came after the grace (${took.toFixed(0)} ms)`);
    assert.equal(await guestAlive(stubborn.pid), false);

    const again = await daemon.client.bg.kill(host, stubborn.exec_id);
    assert.deepEqual(again, { exec_id: stubborn.exec_id, pid: stubborn.pid, running: false, signal_sent: "" }, "killing an exited job is a no-op");
  });

  test("kill takes numbers and Slicer's empty body; a bad signal or grace is 400", async () => {
    const job = await daemon.client.bg.exec(host, { cmd: "sleep", args: ["600"] });
    assertError(
      await call(daemon.url, "POST", `/vm/${host}/exec/${job.exec_id}/kill`, JSON.stringify({ signal: "NOPE" }), { "content-type": "application/json" }),
      400,
      "invalid_request",
      /Invalid signal "NOPE"/,
    );
    assertError(
      await call(daemon.url, "POST", `/vm/${host}/exec/${job.exec_id}/kill`, JSON.stringify({ signal: 99 }), { "content-type": "application/json" }),
      400,
      "invalid_request",
      /Invalid signal 99/,
    );
    assertError(
      await call(daemon.url, "POST", `/vm/${host}/exec/${job.exec_id}/kill`, JSON.stringify({ grace_ms: -5 }), { "content-type": "application/json" }),
      400,
      "invalid_request",
      /grace_ms/,
    );
    assertError(
      await call(daemon.url, "POST", `/vm/${host}/exec/${job.exec_id}/kill`, JSON.stringify({ sig: "TERM" }), { "content-type": "application/json" }),
      400,
      "invalid_request",
      /Unknown body field "sig"/,
    );
    assert.equal((await daemon.client.bg.info(host, job.exec_id)).running, true, "refused kills did nothing");
    // Slicer's Go SDK sends no body for default options, with a JSON content type.
    const empty = await call(daemon.url, "POST", `/vm/${host}/exec/${job.exec_id}/kill`, undefined, { "content-type": "application/json" });
    assert.equal(empty.status, 200, JSON.stringify(empty.body));
    assert.equal(empty.body.signal_sent, "SIGTERM");
    assert.equal((await daemon.client.bg.wait(host, job.exec_id, 20)).signal, "SIGTERM");

    const other = await daemon.client.bg.exec(host, { cmd: "sleep", args: ["600"] });
    assert.equal((await daemon.client.bg.kill(host, other.exec_id, { signal: 9 })).signal_sent, "SIGKILL");
    assert.equal((await daemon.client.bg.wait(host, other.exec_id, 20)).exit_code, 137);
  });

  test("wait-exit takes whole seconds and reports a timeout; other timeouts are 400", async () => {
    const job = await daemon.client.bg.exec(host, { cmd: "sleep", args: ["600"] });
    const started = performance.now();
    const waited = await daemon.client.bg.wait(host, job.exec_id, 1);
    assert.ok(performance.now() - started >= 600, "it waited (in guest time, which runs fast under TCG)");
    assert.deepEqual(waited, { exec_id: job.exec_id, running: true, state: "running", timed_out: true });
    for (const bad of ["1.5", "2s", "-1", "soon"]) {
      assertError(await call(daemon.url, "GET", `/vm/${host}/exec/${job.exec_id}/wait-exit?timeout=${bad}`), 400, "invalid_request", /whole seconds/);
    }
    await daemon.client.bg.remove(host, job.exec_id);
  });

  test("delete kills a running job and reaps it: every later call on its id is 410", async () => {
    const job = await daemon.client.bg.exec(host, { cmd: "sleep", args: ["600"] });
    assert.equal(await guestAlive(job.pid), true);
    assert.deepEqual(await daemon.client.bg.remove(host, job.exec_id), { exec_id: job.exec_id, reaped: true });
    for (let i = 0; i < 50 && (await guestAlive(job.pid)); i++) await sleep(100);
    assert.equal(await guestAlive(job.pid), false, "the process is gone");
    assert.equal(
      (await daemon.client.bg.list(host)).some((j) => j.exec_id === job.exec_id),
      false,
    );
    const base = `/vm/${host}/exec/${job.exec_id}`;
    assertError(await call(daemon.url, "GET", base), 410, "gone");
    assertError(await call(daemon.url, "GET", `${base}/logs`), 410, "gone");
    assertError(await call(daemon.url, "GET", `${base}/wait-exit?timeout=1`), 410, "gone");
    assertError(await call(daemon.url, "POST", `${base}/kill`), 410, "gone");
    assertError(await call(daemon.url, "DELETE", base), 410, "gone");
  });

  test("unknown ids are 404, malformed ids 400, and bad launches 400 with nothing started", async () => {
    const before = (await daemon.client.bg.list(host)).length;
    assertError(await call(daemon.url, "GET", `/vm/${host}/exec/ex_0000000000000000`), 404, "exec_not_found");
    assertError(await call(daemon.url, "DELETE", `/vm/${host}/exec/ex_0000000000000000`), 404, "exec_not_found");
    for (const bad of ["nope", "ex_ZZ", "ex_0123456789abcdef0", "..%2F..%2Fetc", "ex_..%2Fpasswd"]) {
      assertError(await call(daemon.url, "GET", `/vm/${host}/exec/${bad}`), 400, "invalid_name", /exec id/);
      assertError(await call(daemon.url, "GET", `/vm/${host}/exec/${bad}/logs`), 400, "invalid_name");
    }
    assertError(await call(daemon.url, "GET", `/vm/nope-1/exec`), 404, "vm_not_found");
    assertError(await call(daemon.url, "POST", `/vm/${host}/exec?background=true`), 400, "invalid_request", /"cmd"/);
    assertError(await call(daemon.url, "POST", `/vm/${host}/exec?background=true&cmd=no-such-command`), 400, "invalid_request", /command not found/);
    assertError(await call(daemon.url, "POST", `/vm/${host}/exec?background=true&cmd=true&cwd=/no/such/dir`), 400, "invalid_request", /working directory/);
    assertError(await call(daemon.url, "POST", `/vm/${host}/exec?background=true&cmd=cat&stdin=true`, "input"), 400, "invalid_request", /stdin/);
    assertError(await call(daemon.url, "POST", `/vm/${host}/exec?background=true&cmd=true&buffered=true`), 400, "invalid_request", /buffered/);
    assertError(await call(daemon.url, "POST", `/vm/${host}/exec?background=true&cmd=true&ring_bytes=-1`), 400, "invalid_request", /ring_bytes/);
    assertError(await call(daemon.url, "POST", `/vm/${host}/exec?background=true&cmd=true&ring_bytes=100`), 400, "invalid_request", /ring_bytes/);
    assertError(await call(daemon.url, "POST", `/vm/${host}/exec?background=true&cmd=true&ring_bytes=99999999999`), 400, "invalid_request", /ring_bytes/);
    assertError(await call(daemon.url, "GET", `/vm/${host}/exec/ex_0000000000000000/logs?from_id=-1`), 400, "invalid_request", /from_id/);
    assert.equal((await daemon.client.bg.list(host)).length, before, "no job was created by a refused launch");
  });

  test("the shell form, env, cwd and uid reach the job; base64 output keeps raw bytes", async () => {
    const job = await daemon.client.bg.exec(host, {
      cmd: 'echo "$FOO $(pwd) $(id -u)"; printf "\\377\\000"',
      shell: "/bin/sh",
      env: { FOO: "bar baz" },
      cwd: "/tmp",
      uid: 65534,
      gid: 65534,
      stdio: "base64",
    });
    assert.equal((await daemon.client.bg.wait(host, job.exec_id, 30)).exit_code, 0);
    const frames = await logs(job.exec_id);
    const bytes = Buffer.concat(frames.filter((f) => f.type === "stdout").map((f) => Buffer.from(f.type === "stdout" ? f.stdout : "", "base64")));
    assert.deepEqual(bytes, Buffer.concat([Buffer.from("bar baz /tmp 65534\n"), Buffer.from([0xff, 0x00])]));
    const info = await daemon.client.bg.info(host, job.exec_id);
    assert.deepEqual([info.uid, info.gid, info.cwd, info.shell], [65534, 65534, "/tmp", "/bin/sh"]);
  });

  test("a paused VM answers 409 to every background call; resumed, the job is still there", async () => {
    const job = await daemon.client.bg.exec(host, { cmd: "sleep", args: ["600"] });
    assert.equal((await call(daemon.url, "POST", `/vm/${host}/pause`)).status, 200);
    try {
      assertError(await call(daemon.url, "POST", `/vm/${host}/exec?background=true&cmd=true`), 409, "vm_paused");
      assertError(await call(daemon.url, "GET", `/vm/${host}/exec`), 409, "vm_paused");
      assertError(await call(daemon.url, "GET", `/vm/${host}/exec/${job.exec_id}`), 409, "vm_paused");
      assertError(await call(daemon.url, "GET", `/vm/${host}/exec/${job.exec_id}/logs`), 409, "vm_paused");
      assertError(await call(daemon.url, "POST", `/vm/${host}/exec/${job.exec_id}/kill`), 409, "vm_paused");
      assertError(await call(daemon.url, "GET", `/vm/${host}/exec/${job.exec_id}/wait-exit`), 409, "vm_paused");
      assertError(await call(daemon.url, "DELETE", `/vm/${host}/exec/${job.exec_id}`), 409, "vm_paused");
    } finally {
      assert.equal((await call(daemon.url, "POST", `/vm/${host}/resume`)).status, 200);
    }
    assert.equal((await daemon.client.bg.info(host, job.exec_id)).running, true);
    await daemon.client.bg.remove(host, job.exec_id);
  });

  test("the CLI: vm bg exec, list, logs, wait, kill, remove", async () => {
    const env = { CORRAL_URL: daemon.url };
    const started = await corral(["vm", "bg", "exec", host, "--json", "--", "sh", "-c", "echo from-cli; echo oops >&2; exit 3"], env);
    assert.equal(started.code, 0, started.stderr);
    const id = (JSON.parse(started.stdout) as { exec_id: string }).exec_id;
    const waited = await corral(["vm", "bg", "wait", host, id, "--timeout", "30"], env);
    assert.equal(waited.code, 3, "wait exits with the job's exit code");
    const logsOut = await corral(["vm", "bg", "logs", host, id], env);
    assert.equal(logsOut.code, 0, logsOut.stderr);
    assert.equal(logsOut.stdout, "from-cli\n");
    assert.equal(logsOut.stderr, "oops\n");
    const list = await corral(["vm", "bg", "list", host], env);
    assert.match(list.stdout, new RegExp(`${id}\\s+\\d+\\s+exited\\s+3`));
    const sleeper = await corral(["vm", "bg", "exec", host, "--", "sleep", "600"], env);
    const sleeperId = sleeper.stdout.trim();
    assert.match(sleeperId, /^ex_[0-9a-f]{16}$/);
    const badKill = await corral(["vm", "bg", "kill", host, sleeperId, "--signal", "NOPE"], env);
    assert.equal(badKill.code, 1);
    assert.match(badKill.stderr, /^corral: Invalid signal "NOPE".*\(400 invalid_request\)\n$/);
    const kill = await corral(["vm", "bg", "kill", host, sleeperId, "--signal", "KILL"], env);
    assert.equal(kill.code, 0, kill.stderr);
    const removed = await corral(["vm", "bg", "remove", host, sleeperId, id], env);
    assert.equal(removed.code, 0, removed.stderr);
    const gone = await corral(["vm", "bg", "logs", host, id], env);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /\(410 gone\)\n$/);
  });

  test("a job survives the daemon's kill -9 and restart: same process, no output lost", async () => {
    const job = await daemon.client.bg.exec(host, { cmd: "i=0; while [ $i -lt 30 ]; do echo tick$i; i=$((i+1)); sleep 0.2; done", shell: "/bin/sh" });
    await sleep(800);
    await daemon.kill9();
    await sleep(1500); // the job keeps printing while no daemon is there
    await daemon.start();
    const info: BackgroundInfo = await daemon.client.bg.info(host, job.exec_id);
    assert.equal(info.pid, job.pid, "the very same process");
    const frames = await logs(job.exec_id, { follow: true });
    assert.equal(frames.at(-1)?.type, "exit");
    assert.equal(frames.at(-1)?.exit_code, 0);
    assert.equal(stdoutText(frames), Array.from({ length: 30 }, (_, i) => `tick${i}\n`).join(""), "every line, in order");
    assert.equal(
      frames.some((f) => f.type === "gap"),
      false,
    );
  });
});
