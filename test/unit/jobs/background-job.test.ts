// The guest's background jobs, run as real processes on this machine (the agent's code is plain Node).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { PassThrough, Writable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { JobRegistry } from "../../../src/guest/jobs/job-registry.ts";
import { parseKill, parseLaunch } from "../../../src/guest/jobs/job-routes.ts";
import { writeJobLog } from "../../../src/guest/jobs/log-stream.ts";
import { AgentRouteError } from "../../../src/guest/http.ts";
import type { ExecSpec } from "../../../src/protocol/agent.ts";
import type { JobLogFrame } from "../../../src/protocol/jobs.ts";

function spec(script: string, fields: Partial<ExecSpec> = {}): ExecSpec {
  return { cmd: "sh", args: ["-c", script], env: [], stdio: "text", stdin: false, ...fields };
}

async function log(registry: JobRegistry, id: string, options: { afterId?: number; follow?: boolean } = {}): Promise<JobLogFrame[]> {
  const out = new PassThrough();
  let text = "";
  out.on("data", (chunk: Buffer) => (text += chunk.toString()));
  await writeJobLog(registry.get(id), out, { afterId: options.afterId ?? 0, follow: options.follow ?? false, signal: new AbortController().signal });
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as JobLogFrame);
}

/** Running, not a zombie waiting for whoever inherited it. */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function routeError(status: number, code: string): (err: unknown) => boolean {
  return (err) => err instanceof AgentRouteError && err.status === status && err.code === code;
}

describe("background jobs", { timeout: 60_000 }, () => {
  test("a job runs detached; its log is numbered frames: started, output, exit", async () => {
    const jobs = new JobRegistry();
    const job = await jobs.launch(spec("echo one; echo two >&2; exit 3"), 64 * 1024);
    assert.match(job.id, /^ex_[0-9a-f]{16}$/);
    assert.ok(job.pid > 0);
    const done = await job.waitExit(10_000, new AbortController().signal);
    assert.deepEqual(
      { running: done.running, state: done.state, exit_code: done.exit_code, timed_out: done.timed_out },
      { running: false, state: "exited", exit_code: 3, timed_out: false },
    );
    const frames = await log(jobs, job.id);
    assert.deepEqual(
      frames.map((f) => f.id),
      [1, 2, 3, 4],
    );
    assert.equal(frames[0]?.type, "started");
    assert.equal(frames.at(-1)?.type, "exit");
    const output = frames.filter((f) => f.type === "stdout" || f.type === "stderr").map((f) => `${f.type}:${f.type === "stdout" ? f.stdout : f.stderr}`);
    assert.deepEqual(output.sort(), ["stderr:two\n", "stdout:one\n"]);
    assert.equal(frames.at(-1)?.exit_code, 3);
    const info = job.info();
    assert.equal(info.state, "exited");
    assert.equal(info.exit_code, 3);
    assert.equal(info.next_id, 5);
    assert.equal(info.bytes_written, 8);
    assert.equal(info.command, "sh");
    assert.deepEqual(info.args, ["-c", "echo one; echo two >&2; exit 3"]);
  });

  test("from_id gives exactly the frames after it; follow streams until the exit frame", async () => {
    const jobs = new JobRegistry();
    const job = await jobs.launch(spec("for i in 1 2 3 4 5; do echo line$i; sleep 0.05; done"), 64 * 1024);
    const followed = await log(jobs, job.id, { follow: true });
    assert.equal(followed.at(-1)?.type, "exit", "follow ends with the exit frame");
    assert.equal(
      followed
        .filter((f) => f.type === "stdout")
        .map((f) => f.stdout)
        .join(""),
      "line1\nline2\nline3\nline4\nline5\n",
    );
    const ids = followed.map((f) => f.id);
    assert.deepEqual(
      ids,
      ids.map((_, i) => i + 1),
      "ids are 1, 2, 3, ...",
    );
    const after = await log(jobs, job.id, { afterId: 3 });
    assert.deepEqual(after, followed.slice(3), "resuming after 3 gives exactly the later frames");
    assert.deepEqual(await log(jobs, job.id, { afterId: followed.length }), []);
  });

  test("a job that prints more than its ring shows a gap frame saying how much was dropped", async () => {
    const jobs = new JobRegistry();
    const job = await jobs.launch(spec("head -c 200000 /dev/zero | tr '\\0' x"), 4096);
    await job.waitExit(10_000, new AbortController().signal);
    const frames = await log(jobs, job.id);
    const gap = frames[0];
    assert.ok(gap?.type === "gap", `the log starts with a gap: ${JSON.stringify(frames[0])}`);
    const kept = frames
      .slice(1)
      .filter((f) => f.type === "stdout")
      .reduce((n, f) => n + (f.type === "stdout" ? f.stdout.length : 0), 0);
    assert.equal(gap.dropped_bytes + kept, 200000, "dropped plus kept is everything written");
    assert.equal(gap.id + 1, frames[1]?.id, "the gap's id is the last dropped frame's");
    assert.match(gap.message, /dropped/);
    assert.equal(frames.at(-1)?.type, "exit");
    const info = job.info();
    assert.equal(info.bytes_written, 200000);
    assert.equal(info.bytes_dropped, gap.dropped_bytes);
  });

  test("base64 jobs carry raw bytes", async () => {
    const jobs = new JobRegistry();
    const job = await jobs.launch(spec("printf '\\377\\000\\001'", { stdio: "base64" }), 4096);
    await job.waitExit(10_000, new AbortController().signal);
    const frames = await log(jobs, job.id);
    const out = frames.find((f) => f.type === "stdout");
    assert.ok(out?.type === "stdout");
    assert.equal(out.encoding, "base64");
    assert.deepEqual([...Buffer.from(out.stdout, "base64")], [0xff, 0x00, 0x01]);
  });

  test("kill sends the signal to the process group; TERM ignored means KILL after the grace", async () => {
    const jobs = new JobRegistry();
    const polite = await jobs.launch(spec("sleep 30"), 4096);
    const result = polite.kill("SIGTERM", 5000);
    assert.deepEqual(result, { exec_id: polite.id, pid: polite.pid, running: true, signal_sent: "SIGTERM" });
    const ended = await polite.waitExit(5000, new AbortController().signal);
    assert.equal(ended.signal, "SIGTERM");
    assert.equal(ended.exit_code, 143);

    const stubborn = await jobs.launch(spec('trap "" TERM; sleep 30 & wait; sleep 30'), 4096);
    await sleep(200); // let the trap be set
    const started = performance.now();
    stubborn.kill("SIGTERM", 400);
    const killed = await stubborn.waitExit(10_000, new AbortController().signal);
    const took = performance.now() - started;
    assert.equal(killed.signal, "SIGKILL");
    assert.equal(killed.exit_code, 137);
    assert.ok(took >= 350 && took < 5000, `KILL came after the grace (${took.toFixed(0)} ms)`);
    assert.deepEqual(stubborn.kill("SIGTERM", 0), { exec_id: stubborn.id, pid: stubborn.pid, running: false, signal_sent: "" }, "killing an exited job is a no-op");
  });

  test("wait-exit times out on a running job and says so", async () => {
    const jobs = new JobRegistry();
    const job = await jobs.launch(spec("sleep 30"), 4096);
    const waited = await job.waitExit(100, new AbortController().signal);
    assert.deepEqual(waited, { exec_id: job.id, running: true, state: "running", timed_out: true });
    jobs.remove(job.id);
  });

  test("remove kills a running job (its whole group); then the id is gone (410); unknown ids are 404, bad ones 400", async () => {
    const jobs = new JobRegistry();
    const job = await jobs.launch(spec("sleep 30 & echo $!; wait"), 4096);
    let child = 0;
    for (let i = 0; i < 50 && !child; i++) {
      await sleep(20);
      const out = (await log(jobs, job.id)).find((f) => f.type === "stdout");
      if (out?.type === "stdout") child = Number(out.stdout.trim());
    }
    assert.ok(child > 0 && alive(child));
    const following = log(jobs, job.id, { follow: true });
    jobs.remove(job.id);
    await following; // a follower ends when its job is removed
    for (let i = 0; i < 50 && (alive(job.pid) || alive(child)); i++) await sleep(20);
    assert.equal(alive(job.pid), false);
    assert.equal(alive(child), false, "the command's children went too");
    assert.throws(() => jobs.get(job.id), routeError(410, "gone"));
    assert.throws(() => jobs.remove(job.id), routeError(410, "gone"));
    assert.throws(() => jobs.get("ex_0000000000000000"), routeError(404, "exec_not_found"));
    assert.throws(() => jobs.get("../../etc"), routeError(400, "invalid_name"));
  });

  test("a command that cannot start is a 400, and nothing is kept", async () => {
    const jobs = new JobRegistry();
    await assert.rejects(jobs.launch({ ...spec(""), cmd: "no-such-command-here", args: [] }, 4096), routeError(400, "invalid_request"));
    await assert.rejects(jobs.launch(spec("true", { cwd: "/does/not/exist" }), 4096), /working directory/);
    assert.deepEqual(jobs.list(), []);
  });

  test("limits: too many jobs or too much ring memory is a 409", async () => {
    const jobs = new JobRegistry({ maxJobs: 2, maxRingBytes: 1024 * 1024 });
    await assert.rejects(jobs.launch(spec("true"), 2 * 1024 * 1024), routeError(409, "conflict"));
    const a = await jobs.launch(spec("true"), 4096);
    const b = await jobs.launch(spec("true"), 4096);
    await assert.rejects(jobs.launch(spec("true"), 4096), /remove finished jobs/);
    jobs.remove(a.id);
    jobs.remove(b.id);
    jobs.remove((await jobs.launch(spec("true"), 4096)).id);

    const tight = new JobRegistry({ maxJobs: 10, maxRingBytes: 2 * 4096 });
    const together = await Promise.allSettled([1, 2, 3].map(() => tight.launch(spec("true"), 4096)));
    assert.equal(together.filter((r) => r.status === "rejected").length, 1, "launches at the same moment share the limit");
  });

  test("a slow log reader holds the stream back without slowing the job", async () => {
    const jobs = new JobRegistry();
    const job = await jobs.launch(spec("head -c 300000 /dev/zero | tr '\\0' y"), 1024 * 1024);
    let received = 0;
    const slow = new Writable({
      highWaterMark: 1024,
      write(chunk: Buffer, _encoding, done) {
        received += chunk.length;
        setTimeout(done, 1);
      },
    });
    const exited = job.waitExit(10_000, new AbortController().signal);
    await writeJobLog(job, slow, { afterId: 0, follow: true, signal: new AbortController().signal });
    assert.equal((await exited).exit_code, 0);
    assert.ok(received > 300000);
  });
});

describe("agent request checks", () => {
  test("launch bodies", () => {
    const ok = parseLaunch({ spec: spec("true"), ring_bytes: 4096 });
    assert.equal(ok.ring_bytes, 4096);
    assert.throws(() => parseLaunch({ spec: spec("true"), ring_bytes: 100 }), /ring_bytes/);
    assert.throws(() => parseLaunch({ spec: { cmd: "x" }, ring_bytes: 4096 }), /spec\.cmd/);
    assert.throws(() => parseLaunch({ spec: { ...spec("true"), stdin: true }, ring_bytes: 4096 }), /stdin/);
    assert.throws(() => parseLaunch(null), AgentRouteError);
  });

  test("kill bodies", () => {
    assert.deepEqual(parseKill({ signal: "SIGTERM", grace_ms: 10 }), { signal: "SIGTERM", grace_ms: 10 });
    assert.deepEqual(parseKill({ signal: "KILL", grace_ms: 0 }), { signal: "SIGKILL", grace_ms: 0 });
    assert.throws(() => parseKill({ signal: "SIGNOPE", grace_ms: 0 }), /Unknown signal/);
    assert.throws(() => parseKill({ signal: "TERM", grace_ms: -1 }), /grace_ms/);
  });
});
