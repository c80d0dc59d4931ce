// File copy and the filesystem endpoints end to end: a real daemon, one real VM (TCG here), bodies streamed
// through the daemon and the agent's HTTP/2 connection in both directions.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, readFileSync, statSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { PassThrough, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { extract as tarExtract, pack as tarPack } from "tar-stream";
import { request } from "undici";
import { packTree } from "../../src/archive/index.ts";
import { decodeSourceName } from "../../src/protocol/copy-mode.ts";
import { SseParser } from "../../src/protocol/sse.ts";
import type { CorralClient, WatchEvent } from "../../src/sdk/index.ts";
import { TestDaemon } from "../helpers/daemon-process.ts";

const CLI = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
const MiB = 1024 * 1024;

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: { error?: string; code?: string } & Record<string, unknown>;
}

async function call(url: string, method: string, path: string, options: { body?: string | Buffer | Readable; headers?: Record<string, string> } = {}): Promise<Answer> {
  const response = await request(`${url}${path}`, { method: method as "GET", body: options.body, headers: options.headers });
  const text = await response.body.text();
  let json: Answer["json"] = {};
  try {
    json = JSON.parse(text) as Answer["json"];
  } catch {
    // not JSON (a file's bytes)
  }
  return { status: response.statusCode, headers: response.headers, text, json };
}

function assertError(answer: Answer, status: number, code: string, message?: RegExp): void {
  assert.equal(answer.status, status, answer.text);
  assert.equal(answer.json.code, code, answer.text);
  assert.equal(typeof answer.json.error, "string");
  assert.match(String(answer.headers["content-type"]), /application\/json/);
  if (message) assert.match(answer.json.error ?? "", message);
}

async function sha256OfStream(stream: Readable): Promise<{ hash: string; bytes: number }> {
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { hash: hash.digest("hex"), bytes };
}

/** Writes `size` random bytes to `path`, returning their sha256. */
async function randomFile(path: string, size: number): Promise<string> {
  const hash = createHash("sha256");
  let left = size;
  const source = new Readable({
    read() {
      if (left === 0) return void this.push(null);
      const chunk = randomBytes(Math.min(MiB, left));
      left -= chunk.length;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  await pipeline(source, createWriteStream(path));
  return hash.digest("hex");
}

/** Entry names of a tar stream, in order. */
async function tarNames(tar: Readable): Promise<string[]> {
  const names: string[] = [];
  const extract = tarExtract();
  const reading = (async () => {
    for await (const entry of extract) {
      names.push(entry.header.name);
      entry.resume();
    }
  })();
  for await (const chunk of tar) if (!extract.write(chunk)) await once(extract, "drain");
  extract.end(undefined);
  await reading;
  return names;
}

function signed(value: number): string {
  return `${value < 0 ? "-" : "+"}${Math.abs(value).toFixed(1)}`;
}

function peakRssKiB(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmHWM:"));
  return Number(/(\d+)/.exec(line ?? "")?.[1]);
}

/** Runs `command` with `$p` set to the guest agent's /proc directory (found by its command line). */
function forAgent(command: string): string {
  return `for p in /proc/[0-9]*; do case "$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)" in "/opt/corral/bin/node /opt/corral/agent.mjs"*) ${command};; esac; done`;
}

/** How many inotify watches the agent holds. */
async function agentInotifyWatches(client: CorralClient, hostname: string): Promise<number> {
  return Number((await guestShell(client, hostname, forAgent("cat $p/fdinfo/* 2>/dev/null | grep -c 'inotify wd'"))).trim());
}

/** The guest agent's peak RSS, from its /proc status. */
async function agentPeakKiB(client: CorralClient, hostname: string): Promise<number> {
  const output = await guestShell(client, hostname, forAgent("grep VmHWM $p/status"));
  const kib = Number(/VmHWM:\s+(\d+)/.exec(output)?.[1]);
  assert.ok(kib > 0, `the agent's VmHWM: ${output}`);
  return kib;
}

async function guestShell(client: CorralClient, hostname: string, script: string): Promise<string> {
  const result = await client.execBuffered(hostname, { cmd: script, shell: "/bin/sh" });
  assert.equal(result.exit_code, 0, `${script}: ${result.stderr}`);
  return result.stdout;
}

/** A small tree with the names that tend to break things. */
async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, "sub dir", "ünïcödé 目录"), { recursive: true });
  await writeFile(join(root, "read me.txt"), "hello\n");
  await writeFile(join(root, "sub dir", "ünïcödé 目录", "☃ snow.bin"), Buffer.from([0, 1, 2, 255]));
  await writeFile(join(root, "run.sh"), "#!/bin/sh\necho hi\n");
  await chmod(join(root, "run.sh"), 0o750);
  await writeFile(join(root, "debug.log"), "noise");
}

describe("file copy and filesystem", { timeout: 900_000 }, () => {
  let daemon: TestDaemon;
  let hostname: string;
  let url: string;
  let client: CorralClient;
  let work: string;
  let tree: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), "corral-files-"));
    tree = join(work, "my tree ☃");
    await makeTree(tree);
    daemon = await TestDaemon.create();
    await daemon.start();
    url = daemon.url;
    client = daemon.client;
    hostname = (await client.createNode("sbox", {}, { wait: "agent", timeout: "120s" })).hostname;
  });

  after(async () => {
    await daemon.dispose();
    await rm(work, { recursive: true, force: true });
  });

  test("200 MiB go in and come back with the same sha256; neither the daemon's nor the agent's memory follows", async () => {
    const pid = daemon.current.child.pid as number;
    const coldPeak = peakRssKiB(pid);
    // A fresh process's first copy lifts its peak once: V8 frees the memory of copied chunks in batches (up to
    // its external-memory threshold). What must not happen is memory growing with the size of a copy.
    const warmUp = join(work, "warm-up.bin");
    await randomFile(warmUp, 16 * MiB);
    await client.fs.writeFile(hostname, "/root/warm-up.bin", createReadStream(warmUp));
    await sha256OfStream((await client.fs.readFile(hostname, "/root/warm-up.bin")).body);

    const local = join(work, "big.bin");
    const expected = await randomFile(local, 200 * MiB);
    const daemonBefore = peakRssKiB(pid);
    const agentBefore = await agentPeakKiB(client, hostname);

    const started = performance.now();
    const written = await client.fs.writeFile(hostname, "/root/big.bin", createReadStream(local));
    const upSeconds = (performance.now() - started) / 1000;
    assert.deepEqual(written, { path: "/root/big.bin", files: 1, bytes: 200 * MiB });
    assert.equal((await guestShell(client, hostname, "sha256sum /root/big.bin")).split(" ")[0], expected, "the guest has the same bytes");

    const downStarted = performance.now();
    const download = await client.fs.readFile(hostname, "/root/big.bin");
    assert.equal(download.size, 200 * MiB);
    const back = await sha256OfStream(download.body);
    const downSeconds = (performance.now() - downStarted) / 1000;
    assert.deepEqual(back, { hash: expected, bytes: 200 * MiB }, "the same bytes come back");

    const daemonGrowth = (peakRssKiB(pid) - daemonBefore) / 1024;
    const agentGrowth = ((await agentPeakKiB(client, hostname)) - agentBefore) / 1024;
    process.stderr.write(
      `  200 MiB: up ${(200 / upSeconds).toFixed(1)} MiB/s, down ${(200 / downSeconds).toFixed(1)} MiB/s; peak RSS ${signed(daemonGrowth)} MiB daemon, ` +
        `${signed(agentGrowth)} MiB agent (the daemon's first 16 MiB copy: ${signed((daemonBefore - coldPeak) / 1024)} MiB)\n`,
    );
    assert.ok(daemonGrowth <= 32, `the daemon's peak RSS grew by ${daemonGrowth.toFixed(1)} MiB`);
    assert.ok(agentGrowth <= 32, `the agent's peak RSS grew by ${agentGrowth.toFixed(1)} MiB`);
    await client.fs.remove(hostname, "/root/big.bin");
    await client.fs.remove(hostname, "/root/warm-up.bin");
    await rm(local);
  });

  test("binary downloads carry X-Slicer-File-Mode; cp-v1 adds the source's type and name", async () => {
    await client.fs.writeFile(hostname, "/root/mode-test.sh", "#!/bin/sh\n", { permissions: "0751" });
    const legacy = await call(url, "GET", `/vm/${hostname}/cp?path=/root/mode-test.sh&mode=binary`);
    assert.equal(legacy.status, 200);
    assert.equal(legacy.text, "#!/bin/sh\n");
    assert.equal(legacy.headers["x-slicer-file-mode"], "0751");
    assert.equal(legacy.headers["content-length"], "10");
    assert.equal(legacy.headers["x-slicer-source-type"], undefined, "legacy modes carry no cp-v1 headers");

    const v1 = await call(url, "GET", `/vm/${hostname}/cp?path=/root/mode-test.sh&mode=cp-v1-binary&copy_semantics=cp-v1`, { headers: { accept: "application/octet-stream" } });
    assert.equal(v1.headers["x-slicer-source-type"], "file");
    assert.equal(decodeSourceName(String(v1.headers["x-slicer-source-name-base64"])), "mode-test.sh");
    assert.equal(v1.headers["x-slicer-source-name"], "mode-test.sh");

    // Go's ReadFile: no mode, Accept says octet-stream.
    const goRead = await call(url, "GET", `/vm/${hostname}/cp?path=/root/mode-test.sh`, { headers: { accept: "application/octet-stream" } });
    assert.equal(goRead.text, "#!/bin/sh\n");
    // cp-v1-recursive on a file: the bytes, typed as a file.
    const recursive = await call(url, "GET", `/vm/${hostname}/cp?path=/root/mode-test.sh&mode=cp-v1-recursive&copy_semantics=cp-v1`);
    assert.equal(recursive.headers["x-slicer-source-type"], "file");
    assert.equal(recursive.text, "#!/bin/sh\n");
  });

  test("uid, gid and permissions are applied to uploaded files; a replaced file keeps its own", async () => {
    await client.fs.writeFile(hostname, "/tmp/owned/deep/file.txt", "data", { uid: 65534, gid: 65534, permissions: 0o640 });
    assert.equal(await guestShell(client, hostname, "stat -c '%u %g %a' /tmp/owned/deep/file.txt"), "65534 65534 640\n");
    await client.fs.writeFile(hostname, "/tmp/owned/deep/file.txt", "new data");
    assert.equal(await guestShell(client, hostname, "stat -c '%u %g %a %s' /tmp/owned/deep/file.txt"), "65534 65534 640 8\n", "owner and mode survive a replace");
    const info = await client.fs.stat(hostname, "/tmp/owned/deep/file.txt");
    assert.equal(info?.mode, "0640");
  });

  test("Go's cp-v1 binary upload lands inside an existing directory under source_name", async () => {
    await client.fs.mkdir(hostname, "/tmp/into", { recursive: true });
    const answer = await call(url, "POST", `/vm/${hostname}/cp?path=/tmp/into&mode=cp-v1-binary&copy_semantics=cp-v1&source_name=n%C3%A4me.txt&source_type=file&uid=0&gid=0`, {
      body: "v1",
      headers: { "content-type": "application/octet-stream" },
    });
    assert.equal(answer.status, 200, answer.text);
    assert.equal(await guestShell(client, hostname, "cat /tmp/into/n*me.txt"), "v1");
    const missingDir = await call(url, "POST", `/vm/${hostname}/cp?path=/tmp/nowhere/&mode=cp-v1-binary&source_name=x`, {
      body: "x",
      headers: { "content-type": "application/octet-stream" },
    });
    assertError(missingDir, 404, "file_not_found", /does not exist/);
  });

  test("legacy tar keeps the directory's name on top, both ways; unicode and spaces survive", async () => {
    // Host -> guest: the tar's top entry is the directory; it is unpacked under path.
    await client.fs.tarTo(hostname, "/tmp/legacy", packTree(tree, { topName: "my tree ☃" }), { uid: 65534, gid: 65534 });
    const top = await client.fs.readdir(hostname, "/tmp/legacy");
    assert.deepEqual(
      top.map((e) => `${e.name}:${e.type}`),
      ["my tree ☃:directory"],
    );
    const inner = await client.fs.readdir(hostname, "/tmp/legacy/my tree ☃/sub dir/ünïcödé 目录");
    assert.deepEqual(
      inner.map((e) => [e.name, e.size]),
      [["☃ snow.bin", 4]],
    );
    assert.equal(await guestShell(client, hostname, "stat -c '%u %g %a' /tmp/legacy/my*/run.sh"), "65534 65534 750\n", "modes kept, owner applied");

    // Guest -> host: the tar's entries start with the directory's own name.
    const download = await client.fs.tarFrom(hostname, "/tmp/legacy/my tree ☃");
    const names = await tarNames(download.body);
    assert.equal(names[0], "my tree ☃/");
    assert.ok(
      names.every((n) => n.startsWith("my tree ☃/")),
      names.join(", "),
    );
    assert.ok(names.includes("my tree ☃/sub dir/ünïcödé 目录/☃ snow.bin"));
  });

  test("cp-v1 tar: entries relative to the directory, source headers, cp-like placement, excludes", async () => {
    const answer = await request(`${url}/vm/${hostname}/cp?path=${encodeURIComponent("/tmp/legacy/my tree ☃")}&mode=cp-v1-tar&copy_semantics=cp-v1&exclude=*.log`, {
      headers: { accept: "application/x-tar" },
    });
    assert.equal(answer.statusCode, 200);
    assert.equal(answer.headers["x-slicer-source-type"], "directory");
    assert.equal(decodeSourceName(String(answer.headers["x-slicer-source-name-base64"])), "my tree ☃");
    assert.equal(answer.headers["x-slicer-source-name"], undefined, "a name a header cannot carry is only sent in base64");
    const names = await tarNames(answer.body);
    assert.ok(names.includes("read me.txt") && names.includes("sub dir/"), names.join(", "));
    assert.equal(
      names.some((n) => n.endsWith(".log")),
      false,
      "excluded",
    );

    // Upload into an existing directory: lands under source_name; with copy_contents, into it.
    await client.fs.mkdir(hostname, "/tmp/v1dest", { recursive: true });
    await client.fs.upload(hostname, "/tmp/v1dest", packTree(tree), { mode: "cp-v1-tar", sourceName: "named", exclude: ["sub dir"] });
    assert.deepEqual(
      (await client.fs.readdir(hostname, "/tmp/v1dest/named")).map((e) => e.name),
      ["debug.log", "read me.txt", "run.sh"],
    );
    await client.fs.upload(hostname, "/tmp/v1dest", packTree(tree), { mode: "cp-v1-tar", sourceName: "ignored", copyContents: true, permissions: "0600" });
    const contents = await client.fs.readdir(hostname, "/tmp/v1dest");
    assert.deepEqual(
      contents.map((e) => e.name),
      ["debug.log", "named", "read me.txt", "run.sh", "sub dir"],
    );
    assert.equal(contents.find((e) => e.name === "run.sh")?.mode, "0600", "permissions apply to files");
    assert.equal(contents.find((e) => e.name === "sub dir")?.mode, (statSync(join(tree, "sub dir")).mode & 0o7777).toString(8).padStart(4, "0"), "directories keep theirs");

    // A tar of a file in cp-v1-tar mode is refused (Go would fail on it anyway).
    assertError(await call(url, "GET", `/vm/${hostname}/cp?path=/tmp/v1dest/run.sh&mode=cp-v1-tar`), 400, "invalid_request", /it is a file/);
  });

  test("a legacy tar of a file holds that one file; no mode and no Accept means tar", async () => {
    const answer = await request(`${url}/vm/${hostname}/cp?path=/tmp/v1dest/run.sh`);
    assert.equal(answer.headers["content-type"], "application/x-tar");
    assert.deepEqual(await tarNames(answer.body), ["run.sh"]);
  });

  test("readdir, stat, mkdir and remove, with their 404s and 409s", async () => {
    await client.fs.mkdir(hostname, "/tmp/fs-test/a/b", { recursive: true, mode: "0700" });
    const b = await client.fs.stat(hostname, "/tmp/fs-test/a/b");
    assert.equal(b?.type, "directory");
    assert.equal(b?.mode, "0700");
    assert.ok(!Number.isNaN(Date.parse(b?.mtime ?? "")), "mtime is an RFC 3339 time");
    assert.match(b?.mtime ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.equal((await client.fs.stat(hostname, "/tmp/fs-test/a"))?.mode, "0755", "the mode is the new directory's, not its parents'");
    assert.deepEqual(await client.fs.readdir(hostname, "/tmp/fs-test/a/b"), [], "an empty directory is []");
    await guestShell(client, hostname, "ln -s /etc/hostname /tmp/fs-test/link && printf 12345 > /tmp/fs-test/file");
    const listing = await client.fs.readdir(hostname, "/tmp/fs-test");
    assert.deepEqual(
      listing.map((e) => [e.name, e.type]),
      [
        ["a", "directory"],
        ["file", "file"],
        ["link", "symlink"],
      ],
    );
    assert.equal(listing.find((e) => e.name === "file")?.size, 5);
    assert.equal(await client.fs.stat(hostname, "/tmp/fs-test/missing"), null);

    assertError(await call(url, "GET", `/vm/${hostname}/fs/stat?path=/tmp/fs-test/missing`), 404, "file_not_found", /"\/tmp\/fs-test\/missing"/);
    assertError(await call(url, "GET", `/vm/${hostname}/fs/readdir?path=/tmp/fs-test/missing`), 404, "file_not_found");
    assertError(await call(url, "GET", `/vm/${hostname}/fs/readdir?path=/tmp/fs-test/file`), 400, "invalid_request", /not a directory/);
    assertError(await call(url, "POST", `/vm/${hostname}/fs/mkdir`, { body: JSON.stringify({ path: "/tmp/fs-test/a" }) }), 409, "file_exists");
    assertError(await call(url, "POST", `/vm/${hostname}/fs/mkdir`, { body: JSON.stringify({ path: "/tmp/fs-test/x/y" }) }), 404, "file_not_found", /parent/);
    assertError(await call(url, "DELETE", `/vm/${hostname}/fs/remove?path=/tmp/fs-test/a&recursive=false`), 409, "directory_not_empty", /recursive=true/);
    assertError(await call(url, "DELETE", `/vm/${hostname}/fs/remove?path=/tmp/fs-test/missing&recursive=true`), 404, "file_not_found");

    const removed = await call(url, "DELETE", `/vm/${hostname}/fs/remove?path=/tmp/fs-test/link&recursive=false`);
    assert.equal(removed.status, 200, "exactly 200, as Go requires");
    assert.equal((await client.fs.stat(hostname, "/etc/hostname"))?.type, "file", "removing a symlink leaves its target");
    await client.fs.remove(hostname, "/tmp/fs-test", { recursive: true });
    assert.equal(await client.fs.stat(hostname, "/tmp/fs-test"), null);
  });

  test("watch streams a create and a write, then ends at max_events", async () => {
    await client.fs.mkdir(hostname, "/tmp/watched", { recursive: true });
    const response = await request(`${url}/vm/${hostname}/fs/watch?paths=/tmp/watched&max_events=2&timeout=60s`, { headers: { accept: "text/event-stream" } });
    assert.equal(response.statusCode, 200);
    assert.match(String(response.headers["content-type"]), /^text\/event-stream/);
    // The answer's headers mean the watch is in place.
    await guestShell(client, hostname, ": > /tmp/watched/new.txt && sleep 0.3 && echo data >> /tmp/watched/new.txt");
    const parser = new SseParser();
    const events: WatchEvent[] = [];
    const ids: string[] = [];
    let text = "";
    response.body.setEncoding("utf8");
    for await (const chunk of response.body as AsyncIterable<string>) {
      text += chunk;
      for (const message of parser.push(chunk)) {
        events.push(JSON.parse(message.data) as WatchEvent);
        ids.push(message.id ?? "");
      }
    }
    assert.deepEqual(
      events.map((e) => `${e.type} ${e.path}`),
      ["create /tmp/watched/new.txt", "write /tmp/watched/new.txt"],
    );
    assert.deepEqual(ids, ["1", "2"]);
    assert.equal(events[1]?.size, 5);
    assert.equal(events[1]?.isDir, false);
    assert.match(text, /^: watching \/tmp\/watched\n\n/, "a comment says the watch is in place");
    assert.match(text, /event: watch\n/);
  });

  test("watch through the SDK: filters, Last-Event-ID numbering, one_shot; it ends at its timeout", async () => {
    const seen: WatchEvent[] = [];
    const watching = (async () => {
      for await (const event of client.fs.watch(hostname, { paths: ["/tmp/watched"], events: ["create"], patterns: ["*.md"], oneShot: true, lastEventId: 99, timeout: "60s" }))
        seen.push(event);
    })();
    // Keep making files until the watch (set up concurrently) has seen one.
    for (let i = 0; seen.length === 0 && i < 100; i++) {
      await guestShell(client, hostname, `echo x > /tmp/watched/skip-${i}.txt; echo x > /tmp/watched/doc-${i}.md`);
      await Promise.race([watching, sleep(300)]);
    }
    await watching;
    assert.equal(seen.length, 1);
    assert.equal(seen[0]?.id, 100);
    assert.equal(seen[0]?.type, "create");
    assert.match(seen[0]?.path ?? "", /\/tmp\/watched\/doc-\d+\.md$/);

    const started = performance.now();
    const quiet: WatchEvent[] = [];
    for await (const event of client.fs.watch(hostname, { paths: ["/tmp/watched"], timeout: "2s" })) quiet.push(event);
    const seconds = (performance.now() - started) / 1000;
    assert.deepEqual(quiet, []);
    assert.ok(seconds >= 1.9 && seconds < 20, `the watch ended after ${seconds.toFixed(1)}s`);
  });

  test("a client that goes away ends its watch in the guest", async () => {
    await guestShell(client, hostname, "mkdir -p /tmp/gone/a/b/c");
    const before = await agentInotifyWatches(client, hostname);
    const cancel = new AbortController();
    const response = await request(`${url}/vm/${hostname}/fs/watch?paths=/tmp/gone&recursive=true`, { signal: cancel.signal });
    assert.equal(response.statusCode, 200);
    assert.equal(await agentInotifyWatches(client, hostname), before + 4, "one watch per directory");
    cancel.abort();
    await response.body.text().catch(() => undefined);
    for (let i = 0; i < 50 && (await agentInotifyWatches(client, hostname)) !== before; i++) await sleep(100);
    assert.equal(await agentInotifyWatches(client, hostname), before, "the watches are released");
  });

  test("an interrupted upload leaves the old file as it was, and no temporary file", async () => {
    await client.fs.writeFile(hostname, "/tmp/interrupted/keep.txt", "original");
    // A watch (in place once its answer's headers are) follows the agent's temporary file: the upload is cut
    // only once the agent has it (cut earlier, under load, it may never reach the agent), and the test waits
    // for it to go, removed or renamed. A listing cannot tell: it looks right before the file is created too.
    const watch = await request(`${url}/vm/${hostname}/fs/watch?paths=/tmp/interrupted&timeout=60s`, { headers: { accept: "text/event-stream" } });
    assert.equal(watch.statusCode, 200);
    const temporary = /\/\.keep\.txt\.corral-upload-[0-9a-f]+$/;
    let created: () => void = () => undefined;
    const temporaryCreated = new Promise<void>((resolve) => {
      created = resolve;
    });
    const temporaryGone = (async (): Promise<WatchEvent | undefined> => {
      const parser = new SseParser();
      watch.body.setEncoding("utf8");
      for await (const chunk of watch.body as AsyncIterable<string>) {
        for (const message of parser.push(chunk)) {
          const event = JSON.parse(message.data) as WatchEvent;
          if (!temporary.test(event.path)) continue;
          if (event.type === "remove" || event.type === "rename") return event;
          created();
        }
      }
      created(); // the watch ended without it: cut the upload anyway, and fail below
      return undefined;
    })();
    const cancel = new AbortController();
    let sent = 0;
    const slow = new Readable({
      read() {
        sent += 64 * 1024;
        if (sent > 4 * MiB) void temporaryCreated.then(() => cancel.abort());
        else this.push(Buffer.alloc(64 * 1024, 0x61));
      },
    });
    await assert.rejects(client.fs.writeFile(hostname, "/tmp/interrupted/keep.txt", slow, { signal: cancel.signal }));
    const gone = await temporaryGone;
    watch.body.destroy();
    assert.equal(gone?.type, "remove", "the agent removes its temporary file (the watch ends after 60 s without it)");
    assert.deepEqual(
      (await client.fs.readdir(hostname, "/tmp/interrupted")).map((e) => e.name),
      ["keep.txt"],
    );
    assert.equal(await guestShell(client, hostname, "cat /tmp/interrupted/keep.txt"), "original");
  });

  test("an uploaded tar that climbs out of its destination is refused and writes nothing", async () => {
    for (const name of ["../escape.txt", "/tmp/abs-escape.txt", "ok/../../escape.txt"]) {
      const pack = tarPack();
      pack.entry({ name, type: "file", mode: 0o644 }, "pwned");
      pack.finalize();
      const answer = await call(url, "POST", `/vm/${hostname}/cp?path=/tmp/jail/inner&mode=tar`, { body: Readable.from(pack), headers: { "content-type": "application/x-tar" } });
      assertError(answer, 400, "invalid_request", /Cannot unpack tar entry/);
    }
    const symlinkFirst = tarPack();
    symlinkFirst.entry({ name: "out", type: "symlink", linkname: "/etc" });
    symlinkFirst.entry({ name: "out/evil.conf", type: "file", mode: 0o644 }, "pwned");
    symlinkFirst.finalize();
    assertError(await call(url, "POST", `/vm/${hostname}/cp?path=/tmp/jail/inner&mode=tar`, { body: Readable.from(symlinkFirst) }), 400, "invalid_request", /symlink/);
    assert.equal(await guestShell(client, hostname, "ls /tmp/jail /tmp/escape.txt /tmp/abs-escape.txt /etc/evil.conf 2>/dev/null; true"), "/tmp/jail:\ninner\n");
    assertError(
      await call(url, "POST", `/vm/${hostname}/cp?path=/tmp/jail&mode=tar`, { body: "this is not a tar archive", headers: { "content-type": "application/x-tar" } }),
      400,
      "invalid_request",
      /not a valid tar/,
    );
  });

  test("bad input on every endpoint is a 4xx naming the problem", async () => {
    const vm = `/vm/${hostname}`;
    const octet = { "content-type": "application/octet-stream" };
    // Missing path.
    assertError(await call(url, "GET", `${vm}/cp?mode=binary`), 400, "invalid_request", /"path"/);
    assertError(await call(url, "POST", `${vm}/cp?mode=binary`, { body: "x", headers: octet }), 400, "invalid_request", /"path"/);
    assertError(await call(url, "GET", `${vm}/fs/readdir`), 400, "invalid_request", /"path"/);
    assertError(await call(url, "GET", `${vm}/fs/stat`), 400, "invalid_request", /"path"/);
    assertError(await call(url, "DELETE", `${vm}/fs/remove?recursive=true`), 400, "invalid_request", /"path"/);
    assertError(await call(url, "POST", `${vm}/fs/mkdir`, { body: "{}" }), 400, "invalid_request", /"path"/);
    assertError(await call(url, "POST", `${vm}/fs/mkdir`, { body: '{"path":"/x","mode":"rwx"}' }), 400, "invalid_request", /"mode"/);
    assertError(await call(url, "POST", `${vm}/fs/mkdir`, { body: '{"path":"/x","colour":"red"}' }), 400, "invalid_request", /"colour"/);
    assertError(await call(url, "GET", `${vm}/fs/watch`), 400, "invalid_request", /"paths"/);
    assertError(await call(url, "GET", `${vm}/fs/watch?paths=/tmp&events=explode`), 400, "invalid_request", /"events"/);
    assertError(await call(url, "GET", `${vm}/fs/watch?paths=/tmp&timeout=soon`), 400, "invalid_duration", /timeout/);
    assertError(await call(url, "GET", `${vm}/fs/watch?paths=/nope`), 404, "file_not_found", /"\/nope"/);
    // Modes, permissions, ownership.
    assertError(await call(url, "GET", `${vm}/cp?path=/etc&mode=x`), 400, "invalid_request", /invalid mode: x/);
    assertError(await call(url, "POST", `${vm}/cp?path=/tmp/m&mode=x`, { body: "x", headers: octet }), 400, "invalid_request", /invalid mode: x/);
    assertError(await call(url, "POST", `${vm}/cp?path=/tmp/m&mode=binary&permissions=rw`, { body: "x", headers: octet }), 400, "invalid_request", /"permissions"/);
    assertError(await call(url, "POST", `${vm}/cp?path=/tmp/m&mode=binary&uid=-1`, { body: "x", headers: octet }), 400, "invalid_request", /"uid"/);
    // What the path is.
    assertError(await call(url, "GET", `${vm}/cp?path=/no/such/file&mode=binary`), 404, "file_not_found", /does not exist/);
    assertError(await call(url, "GET", `${vm}/cp?path=/etc&mode=binary`), 400, "invalid_request", /must specify a file not a directory/);
    assertError(await call(url, "POST", `${vm}/cp?path=/etc&mode=binary`, { body: "x", headers: octet }), 400, "invalid_request", /it is a directory/);
    assertError(await call(url, "POST", `${vm}/cp?path=/etc/hostname&mode=tar`, { body: "x" }), 400, "invalid_request", /it is a file/);
    // Unknown VM, bad hostname.
    for (const [method, path] of [
      ["GET", "/cp?path=/etc/hostname"],
      ["POST", "/cp?path=/tmp/x&mode=binary"],
      ["GET", "/fs/readdir?path=/"],
      ["GET", "/fs/stat?path=/"],
      ["DELETE", "/fs/remove?path=/tmp/x&recursive=false"],
      ["GET", "/fs/watch?paths=/tmp"],
    ] as const) {
      assertError(await call(url, method, `/vm/nope-9${path}`, method === "POST" ? { body: "x", headers: octet } : {}), 404, "vm_not_found", /"nope-9"/);
      assertError(await call(url, method, `/vm/Bad_Name${path}`, method === "POST" ? { body: "x", headers: octet } : {}), 400, "invalid_name");
    }
    assertError(await call(url, "POST", "/vm/nope-9/fs/mkdir", { body: '{"path":"/x"}' }), 404, "vm_not_found");
  });

  test("a refused upload is answered at once, before its body is sent; the daemon stays healthy", async () => {
    const pid = daemon.current.child.pid as number;
    const peakBefore = peakRssKiB(pid);
    let sent = 0;
    const large = new Readable({
      read() {
        sent += MiB;
        this.push(sent > 256 * MiB ? null : Buffer.alloc(MiB));
      },
    });
    const answer = await call(url, "POST", `/vm/${hostname}/cp?path=/tmp/refused&mode=nope`, { body: large, headers: { "content-type": "application/octet-stream" } });
    assertError(answer, 400, "invalid_request", /invalid mode: nope/);
    assert.ok((peakRssKiB(pid) - peakBefore) / 1024 < 16, "the refused body is discarded, not kept");
    // And a refusal from the guest, halfway through a body: the stream is ended, the daemon stays healthy.
    const stream = new PassThrough();
    const pending = call(url, "POST", `/vm/${hostname}/cp?path=/tmp/jail/again&mode=tar`, { body: stream, headers: { "content-type": "application/x-tar" } });
    const pack = tarPack();
    pack.entry({ name: "../escape", type: "file", mode: 0o644 }, "x");
    for await (const chunk of pack) {
      stream.write(chunk);
      if ((chunk as Buffer).length >= 512) break;
    }
    const refused = await pending;
    stream.destroy();
    assertError(refused, 400, "invalid_request", /Cannot unpack tar entry/);
    assert.equal((await client.fs.stat(hostname, "/etc/hostname"))?.type, "file", "the daemon and the agent still answer");
  });

  test("a paused VM answers 409 for copies and filesystem calls", async () => {
    const paused = await call(url, "POST", `/vm/${hostname}/pause`);
    assert.equal(paused.status, 200);
    try {
      assertError(await call(url, "GET", `/vm/${hostname}/cp?path=/etc/hostname&mode=binary`), 409, "vm_paused", /resume/);
      assertError(await call(url, "POST", `/vm/${hostname}/cp?path=/tmp/p&mode=binary`, { body: "x", headers: { "content-type": "application/octet-stream" } }), 409, "vm_paused");
      assertError(await call(url, "GET", `/vm/${hostname}/fs/readdir?path=/`), 409, "vm_paused");
      assertError(await call(url, "GET", `/vm/${hostname}/fs/stat?path=/`), 409, "vm_paused");
      assertError(await call(url, "POST", `/vm/${hostname}/fs/mkdir`, { body: '{"path":"/tmp/p"}' }), 409, "vm_paused");
      assertError(await call(url, "DELETE", `/vm/${hostname}/fs/remove?path=/tmp/p&recursive=true`), 409, "vm_paused");
      assertError(await call(url, "GET", `/vm/${hostname}/fs/watch?paths=/tmp`), 409, "vm_paused");
    } finally {
      await call(url, "POST", `/vm/${hostname}/resume`);
    }
    assert.equal((await client.fs.stat(hostname, "/"))?.type, "directory");
  });

  test("the CLI copies files and directories both ways and lists a directory", async () => {
    const cli = async (...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => {
      const input = args[0] === "--stdin" ? args.splice(0, 2)[1] : undefined;
      const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args, "--url", url], { stdio: ["pipe", "pipe", "pipe"] });
      child.stdin.end(input ?? "");
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
      const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
      return { code, stdout, stderr };
    };
    await guestShell(client, hostname, "rm -rf /tmp/cli && mkdir -p /tmp/cli");
    const up = await cli("vm", "cp", tree, `${hostname}:/tmp/cli`, "--json", "--uid", "65534");
    assert.equal(up.code, 0, up.stderr);
    const report = JSON.parse(up.stdout) as { destination: string; files: number; type: string };
    assert.equal(report.destination, `${hostname}:/tmp/cli/my tree ☃`, "into an existing directory, under the source's name");
    assert.equal(report.files, 4);
    assert.equal(await guestShell(client, hostname, "stat -c %u /tmp/cli/my*/read*"), "65534\n");

    const fileUp = await cli("vm", "cp", join(tree, "run.sh"), `${hostname}:/tmp/cli/renamed.sh`);
    assert.equal(fileUp.code, 0, fileUp.stderr);
    assert.equal(await guestShell(client, hostname, "stat -c %a /tmp/cli/renamed.sh"), "750\n", "a file keeps its mode");

    const back = join(work, "back");
    await mkdir(back);
    const down = await cli("vm", "cp", `${hostname}:/tmp/cli/my tree ☃`, back);
    assert.equal(down.code, 0, down.stderr);
    assert.deepEqual((await readdir(join(back, "my tree ☃"))).sort(), ["debug.log", "read me.txt", "run.sh", "sub dir"]);
    assert.deepEqual([...(await readFile(join(back, "my tree ☃", "sub dir", "ünïcödé 目录", "☃ snow.bin")))], [0, 1, 2, 255]);

    const fileDown = await cli("vm", "cp", `${hostname}:/tmp/cli/renamed.sh`, join(back, "copy.sh"));
    assert.equal(fileDown.code, 0, fileDown.stderr);
    assert.equal(await readFile(join(back, "copy.sh"), "utf8"), "#!/bin/sh\necho hi\n");
    assert.equal(statSync(join(back, "copy.sh")).mode & 0o777, 0o750);

    const piped = await cli("--stdin", "from a pipe\n", "vm", "cp", "-", `${hostname}:/tmp/cli/stdin.txt`);
    assert.equal(piped.code, 0, piped.stderr);
    const toStdout = await cli("vm", "cp", `${hostname}:/tmp/cli/stdin.txt`, "-");
    assert.equal(toStdout.stdout, "from a pipe\n");

    const listed = await cli("vm", "files", hostname, "/tmp/cli", "--json");
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(
      (JSON.parse(listed.stdout) as { name: string }[]).map((e) => e.name),
      ["my tree ☃", "renamed.sh", "stdin.txt"],
    );

    const bothLocal = await cli("vm", "cp", tree, join(work, "elsewhere"));
    assert.equal(bothLocal.code, 1);
    assert.match(bothLocal.stderr, /Name a VM on exactly one side/);
    const missing = await cli("vm", "cp", `${hostname}:/no/such`, back);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /does not exist \(404 file_not_found\)/);
  });
});
