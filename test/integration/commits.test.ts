// Commit and fork: a VM's disk, and on request its running state, saved and turned into new sandboxes.
// A memory fork resumes where the VM was (its /tmp, its processes) as a machine of its own; a disk fork
// boots from what the VM had written; commits with forks cannot be deleted.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { CorralApiError, type CommitView } from "../../src/sdk/index.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";

const CORRAL = fileURLToPath(new URL("../../corral", import.meta.url));

function rejectsWith(status: number, code?: string): (err: unknown) => boolean {
  return (err: unknown) => err instanceof CorralApiError && err.status === status && (code === undefined || err.code === code);
}

describe("commit and fork", { timeout: 900_000 }, () => {
  let daemon: TestDaemon;
  let source: string;
  let memoryCommit: CommitView;
  let diskCommit: CommitView;
  const forks: string[] = [];

  const sh = async (hostname: string, script: string): Promise<string> => {
    const result = await daemon.client.execBuffered(hostname, { cmd: "sh", args: ["-c", script] });
    assert.equal(result.exit_code, 0, `${script}: ${result.stderr}`);
    return result.stdout.trim();
  };

  before(async () => {
    daemon = await TestDaemon.create();
    await daemon.start();
    source = (await daemon.client.createNode("sbox", { tags: ["origin"] }, { wait: "agent", timeout: "180s" })).hostname;
    // A file in /tmp, one on the root disk, and a process that keeps running.
    await sh(source, "echo in-memory > /tmp/note; echo on-disk > /root/kept; setsid sleep 100000 </dev/null >/dev/null 2>&1 & echo started");
  });

  after(async () => {
    await daemon.dispose();
  });

  test("a memory commit answers 201 in the SDK's shape, and the VM runs on", async () => {
    memoryCommit = await daemon.client.commit(source, { memory: true, tags: ["warm"], labels: { "team/owner": "qa" }, cache_key: "deps-v1" });
    assert.match(memoryCommit.commit_id, /^c-[0-9a-f]{12}$/);
    assert.equal(memoryCommit.source_hostname, source);
    assert.equal(memoryCommit.hostgroup, "sbox");
    assert.deepEqual(memoryCommit.tags, ["warm"]);
    assert.deepEqual(memoryCommit.labels, { "team/owner": "qa" });
    assert.equal(memoryCommit.cache_key, "deps-v1");
    assert.equal(memoryCommit.memory, true);
    assert.ok(memoryCommit.size_bytes > 1024 * 1024, "the saved memory is in the commit");
    assert.deepEqual(memoryCommit.forks, []);
    assert.equal(await sh(source, "cat /tmp/note"), "in-memory");
    assert.equal(await sh(source, "echo after-commit > /tmp/later; cat /tmp/later"), "after-commit");
  });

  test("a fork of a memory commit sees the /tmp file and the running process, as a machine of its own", async () => {
    const fork = await daemon.client.fork(memoryCommit.commit_id, {}, { wait: "agent", timeout: "180s" });
    forks.push(fork.hostname);
    assert.notEqual(fork.hostname, source);
    assert.equal(await sh(fork.hostname, "cat /tmp/note"), "in-memory");
    assert.equal(await sh(fork.hostname, "cat /root/kept"), "on-disk");
    assert.equal(await sh(fork.hostname, "test -e /tmp/later && echo present || echo absent"), "absent", "written after the commit");
    assert.match(await sh(fork.hostname, "ps -o args | grep -c '^sleep 100000$' || true"), /^1$/);
    assert.equal(await sh(fork.hostname, "hostname"), fork.hostname);
    const probe = "cat /etc/machine-id; head -c32 /dev/urandom | sha256sum; cat /sys/class/net/eth0/address";
    const [mine, theirs] = [await sh(fork.hostname, probe), await sh(source, probe)];
    for (const [index, line] of mine.split("\n").entries()) assert.notEqual(line, theirs.split("\n")[index]);
    assert.deepEqual((await daemon.client.describe(fork.hostname)).tags, ["warm"], "a fork carries the commit's tags unless told otherwise");
    assert.deepEqual((await daemon.client.getCommit(memoryCommit.commit_id)).forks, [fork.hostname]);
  });

  test("a disk commit forks into a fresh boot of what the VM had written", async () => {
    diskCommit = await daemon.client.commit(source, { tags: ["cold"] });
    assert.equal(diskCommit.memory, false);
    const fork = await daemon.client.fork(diskCommit.commit_id, { tags: ["mine"] }, { wait: "agent", timeout: "180s" });
    forks.push(fork.hostname);
    assert.equal(await sh(fork.hostname, "cat /root/kept"), "on-disk");
    assert.equal(await sh(fork.hostname, "ps -o args | grep -c '^sleep 100000$' || true"), "0", "a boot: no process of the source");
    assert.equal(await sh(fork.hostname, "hostname"), fork.hostname);
    assert.deepEqual((await daemon.client.describe(fork.hostname)).tags, ["mine"]);
  });

  test("list, filter by cache key, and the CLI", async () => {
    const all = await daemon.client.commits();
    assert.deepEqual(
      all.map((c) => c.commit_id),
      [memoryCommit.commit_id, diskCommit.commit_id],
    );
    assert.deepEqual(
      (await daemon.client.commits({ cacheKey: "deps-v1" })).map((c) => c.commit_id),
      [memoryCommit.commit_id],
    );
    const cli = promisify(execFile);
    const committed = await cli(CORRAL, ["vm", "commit", source, "--label", "a=b", "--cache-key", "cli", "--url", daemon.url]);
    const id = /^Committed \S+ as (c-[0-9a-f]{12}) \(disk only, [\d.]+ [KMG]i?B\)\n$/.exec(committed.stdout)?.[1];
    assert.ok(id, committed.stdout);
    const listed = await cli(CORRAL, ["commit", "list", "--url", daemon.url]);
    assert.match(listed.stdout, /^COMMIT\s+SOURCE\s+HOSTGROUP\s+KIND/);
    assert.match(listed.stdout, new RegExp(`${id}\\s+${source}\\s+sbox\\s+disk`));
    const forked = await cli(CORRAL, ["vm", "fork", id, "--url", daemon.url]);
    const hostname = forked.stdout.trim();
    forks.push(hostname);
    assert.equal(await sh(hostname, "hostname"), hostname);
    await assert.rejects(cli(CORRAL, ["commit", "remove", id, "--url", daemon.url]), (err: Error & { stderr?: string }) => /forked from it/.test(err.stderr ?? ""));
    await daemon.client.deleteNode("sbox", hostname);
    forks.pop();
    assert.equal((await cli(CORRAL, ["commit", "remove", id, "--url", daemon.url])).stdout, `Deleted ${id}\n`);
  });

  test("a commit with forks cannot be deleted; without, it can, and then it is gone", async () => {
    await assert.rejects(daemon.client.deleteCommit(memoryCommit.commit_id), rejectsWith(409, "conflict"));
    for (const hostname of forks.splice(0)) await daemon.client.deleteNode("sbox", hostname);
    await daemon.client.deleteCommit(memoryCommit.commit_id);
    await daemon.client.deleteCommit(diskCommit.commit_id);
    await assert.rejects(daemon.client.getCommit(memoryCommit.commit_id), rejectsWith(404, "commit_not_found"));
    assert.deepEqual(await daemon.client.commits(), []);
    const empty = await promisify(execFile)(CORRAL, ["commit", "list", "--url", daemon.url]);
    assert.equal(empty.stdout, "No commits. Make one with: corral vm commit HOST [--memory]\n");
  });

  test("bad input: unknown VM, malformed or unknown commit, bad labels, unknown fields", async () => {
    await assert.rejects(daemon.client.commit("sbox-999"), rejectsWith(404, "vm_not_found"));
    await assert.rejects(daemon.client.getCommit("nope"), rejectsWith(400));
    await assert.rejects(daemon.client.getCommit("c-000000000000"), rejectsWith(404, "commit_not_found"));
    await assert.rejects(daemon.client.fork("c-000000000000"), rejectsWith(404, "commit_not_found"));
    await assert.rejects(daemon.client.deleteCommit("c-000000000000"), rejectsWith(404, "commit_not_found"));
    await assert.rejects(daemon.client.commit(source, { labels: { "bad name!": "x" } }), rejectsWith(400));
    await assert.rejects(daemon.client.commit(source, { memory: "yes" } as never), rejectsWith(400));
    await assert.rejects(daemon.client.commit(source, { surprise: 1 } as never), rejectsWith(400));
    assert.deepEqual(await daemon.client.commits(), [], "nothing was stored by the refused requests");
  });
});
