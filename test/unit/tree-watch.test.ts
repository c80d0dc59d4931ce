// The guest's watch logic on this machine's own filesystem (real inotify through fs.watch).
import assert from "node:assert/strict";
import { renameSync, rmSync, writeFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, rename, rm, writeFile, appendFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { TreeWatch, type RawWatchEvent } from "../../src/guest/files/tree-watch.ts";
import { mergeTypes, WatchSession } from "../../src/guest/files/watch-session.ts";
import type { WatchEvent, WatchSpec } from "../../src/protocol/files.ts";
import { SseParser } from "../../src/protocol/sse.ts";

/** Waits until `events` satisfies `done` (or fails after a deadline). */
async function until<T>(events: T[], done: (events: T[]) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!done(events)) {
    if (Date.now() > deadline) assert.fail(`Timed out waiting for ${what}; got ${JSON.stringify(events)}`);
    await sleep(10);
  }
}

const brief = (events: RawWatchEvent[], dir: string): string[] => events.map((e) => `${e.type} ${e.path.slice(dir.length + 1)}${e.isDir ? "/" : ""}`);

describe("TreeWatch", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "corral-watch-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("create, write, chmod, rename and remove are told apart", async () => {
    const root = await mkdtemp(join(dir, "kinds-"));
    await writeFile(join(root, "existing"), "x");
    const events: RawWatchEvent[] = [];
    const watch = new TreeWatch([root], false, (e) => events.push(e));
    await watch.start();
    try {
      await writeFile(join(root, "a.txt"), "");
      await until(events, (e) => e.length >= 1, "create");
      await appendFile(join(root, "a.txt"), "more");
      await until(events, (e) => e.some((x) => x.type === "write"), "write");
      await chmod(join(root, "a.txt"), 0o600);
      await until(events, (e) => e.some((x) => x.type === "chmod"), "chmod");
      await rename(join(root, "existing"), join(root, "renamed"));
      await until(events, (e) => e.some((x) => x.type === "rename"), "rename");
      await rm(join(root, "a.txt"));
      await until(events, (e) => e.some((x) => x.type === "remove"), "remove");
      assert.deepEqual(brief(events, root), ["create a.txt", "write a.txt", "chmod a.txt", "rename existing", "create renamed", "remove a.txt"]);
      assert.equal(events.find((e) => e.type === "write")?.size, 4);
    } finally {
      watch.close();
    }
  });

  test("a burst handled late still reports creations and removals in order of names", async () => {
    const root = await mkdtemp(join(dir, "burst-"));
    const events: RawWatchEvent[] = [];
    const watch = new TreeWatch([root], false, (e) => events.push(e));
    await watch.start();
    try {
      // All of it happens in one turn of the event loop, before the first event is handled: the paths are
      // gone by then (what a busy, emulated guest sees).
      writeFileSync(join(root, "t1"), "hi");
      renameSync(join(root, "t1"), join(root, "t2"));
      rmSync(join(root, "t2"));
      await until(events, (e) => e.some((x) => x.type === "remove" && x.path.endsWith("t2")), "the last removal");
      const t1 = brief(events, root).filter((e) => e.endsWith(" t1"));
      const t2 = brief(events, root).filter((e) => e.endsWith(" t2"));
      assert.deepEqual(t1[0], "create t1");
      assert.ok(["remove t1", "rename t1"].includes(t1.at(-1) as string), t1.join());
      assert.deepEqual([t2[0], t2.at(-1)], ["create t2", "remove t2"]);
    } finally {
      watch.close();
    }
  });

  test("recursive watches follow new directories and report what they already hold", async () => {
    const root = await mkdtemp(join(dir, "deep-"));
    const events: RawWatchEvent[] = [];
    const watch = new TreeWatch([root], true, (e) => events.push(e));
    await watch.start();
    try {
      await mkdir(join(root, "a", "b"), { recursive: true });
      await writeFile(join(root, "a", "b", "f"), "1");
      await until(events, (e) => e.some((x) => x.path.endsWith("/a/b/f")), "the file in the new tree");
      await writeFile(join(root, "a", "b", "g"), "2");
      await until(events, (e) => e.some((x) => x.path.endsWith("/a/b/g")), "a file created after the watch was added");
      assert.ok(brief(events, root).includes("create a/"));
      await rm(join(root, "a"), { recursive: true });
      await until(events, (e) => e.some((x) => x.type === "remove" && x.path.endsWith("/a")), "the removal");
      assert.equal(events.find((x) => x.type === "remove" && x.path.endsWith("/a"))?.isDir, true);
    } finally {
      watch.close();
    }
  });

  test("a file can be a root, and a missing root is an error", async () => {
    const root = await mkdtemp(join(dir, "file-"));
    const file = join(root, "only");
    await writeFile(file, "1");
    const events: RawWatchEvent[] = [];
    const watch = new TreeWatch([file], false, (e) => events.push(e));
    await watch.start();
    try {
      await appendFile(file, "2");
      await until(events, (e) => e.some((x) => x.type === "write"), "write");
      await rm(file);
      await until(events, (e) => e.some((x) => x.type === "remove"), "remove");
    } finally {
      watch.close();
    }
    await assert.rejects(new TreeWatch([join(root, "missing")], false, () => undefined).start(), { code: "ENOENT" });
  });
});

describe("WatchSession", () => {
  const base: WatchSpec = { paths: ["/w"], recursive: false, events: [], patterns: [], debounceMs: 0, timeoutMs: 0, maxEvents: 0, lastEventId: 0 };
  const raw = (type: RawWatchEvent["type"], path: string): RawWatchEvent => ({ type, path, root: "/w", size: 1, isDir: false });

  function session(spec: Partial<WatchSpec>): { session: WatchSession; events: WatchEvent[]; ended: () => boolean } {
    const parser = new SseParser();
    const events: WatchEvent[] = [];
    let ended = false;
    const s = new WatchSession(
      { ...base, ...spec },
      {
        write: (text) => {
          for (const message of parser.push(text)) events.push(JSON.parse(message.data) as WatchEvent);
          return 0;
        },
        end: () => {
          ended = true;
        },
      },
    );
    return { session: s, events, ended: () => ended };
  }

  test("ids continue after Last-Event-ID, and the stream ends at max_events", () => {
    const { session: s, events, ended } = session({ lastEventId: 41, maxEvents: 2 });
    s.accept(raw("create", "/w/a"));
    s.accept(raw("write", "/w/a"));
    s.accept(raw("remove", "/w/a"));
    assert.deepEqual(
      events.map((e) => [e.id, e.type]),
      [
        [42, "create"],
        [43, "write"],
      ],
    );
    assert.equal(ended(), true);
    assert.equal(typeof events[0]?.isDir, "boolean");
    assert.match(events[0]?.timestamp ?? "", /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$/);
  });

  test("events and patterns filter; patterns apply to the path below the root", () => {
    const { session: s, events } = session({ events: ["write"], patterns: ["*.go", "bin/*"] });
    s.accept(raw("create", "/w/main.go"));
    s.accept(raw("write", "/w/main.go"));
    s.accept(raw("write", "/w/README"));
    s.accept(raw("write", "/w/bin/tool"));
    s.accept(raw("write", "/w/src/bin/tool"));
    assert.deepEqual(
      events.map((e) => e.path),
      ["/w/main.go", "/w/bin/tool"],
    );
  });

  test("debounce merges a burst on one path into one event", async () => {
    const { session: s, events } = session({ debounceMs: 50 });
    s.accept(raw("create", "/w/a"));
    s.accept(raw("write", "/w/a"));
    s.accept(raw("write", "/w/a"));
    s.accept(raw("write", "/w/b"));
    await sleep(120);
    assert.deepEqual(
      events.map((e) => `${e.type} ${e.path}`),
      ["create /w/a", "write /w/b"],
    );
    assert.equal(mergeTypes("create", "chmod"), "create");
    assert.equal(mergeTypes("write", "remove"), "remove");
  });

  test("a consumer that stops reading is cut off with an error event", () => {
    const events: string[] = [];
    let ended = false;
    const s = new WatchSession(base, {
      write: (text) => {
        events.push(text);
        return 5 * 1024 * 1024;
      },
      end: () => {
        ended = true;
      },
    });
    s.accept(raw("write", "/w/a"));
    assert.equal(ended, true);
    assert.match(events.at(-1) ?? "", /"type":"error".*not reading/);
  });
});
