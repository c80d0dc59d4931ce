// A full disk, however it is reported (a system call, SQLite, a program's message), becomes a 507 that says
// what was being written and where; the shared error handler answers 507 for the writes no service named.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import Database from "better-sqlite3";
import Fastify from "fastify";
import { installErrorHandling } from "../../src/http/error-handler.ts";
import { CorralError } from "../../src/protocol/errors.ts";
import { CommandError } from "../../src/util/run.ts";
import { isStorageFull, storageFullError, storageFullReason } from "../../src/util/storage-full.ts";

const MESSAGES: Record<string, string> = { ENOSPC: "no space left on device", EDQUOT: "disk quota exceeded", EACCES: "permission denied" };
/** An error as Node's fs reports it. */
const errno = (code: string): NodeJS.ErrnoException => Object.assign(new Error(`${code}: ${MESSAGES[code]}, write`), { code });

/** A real SQLITE_FULL: the database may not grow past its few pages. */
function sqliteFull(): unknown {
  const db = new Database(":memory:");
  try {
    db.exec("CREATE TABLE t (v TEXT)");
    db.pragma("max_page_count = 2");
    const insert = db.prepare("INSERT INTO t (v) VALUES (?)");
    for (let i = 0; i < 100; i++) insert.run("x".repeat(4000));
  } catch (err) {
    return err;
  } finally {
    db.close();
  }
  assert.fail("expected SQLITE_FULL");
}

describe("storage-full errors", () => {
  test("ENOSPC and EDQUOT, SQLite's SQLITE_FULL and a program's message are a full disk, through causes", () => {
    assert.equal(storageFullReason(errno("ENOSPC")), "No space left on device");
    assert.equal(storageFullReason(errno("EDQUOT")), "Disk quota exceeded");
    const full = sqliteFull();
    assert.equal((full as { code?: string }).code, "SQLITE_FULL");
    assert.equal(storageFullReason(full), "No space left on device");
    const qemuImg = new CommandError("qemu-img create -f qcow2 …", 1, "qemu-img: /state/vms/sbox-2/disk.qcow2: Could not write qcow2 header: No space left on device\n");
    assert.equal(storageFullReason(qemuImg), "No space left on device");
    assert.equal(storageFullReason(new Error("launch failed", { cause: new Error("copy", { cause: errno("ENOSPC") }) })), "No space left on device");
  });

  test("anything else is not, and a CorralError (a guest's full disk included) is already classified", () => {
    for (const err of [
      errno("EACCES"),
      new Error("boom"),
      "ENOSPC",
      null,
      undefined,
      new CorralError("insufficient_storage", "the guest's disk is full: No space left on device"),
    ]) {
      assert.equal(isStorageFull(err), false, String(err));
    }
  });

  test("storageFullError names what and where, and nothing for other errors", () => {
    const err = storageFullError(errno("ENOSPC"), 'secret "db"', "/var/lib/corral/daemon/secrets");
    assert.ok(err instanceof CorralError);
    assert.deepEqual([err.code, err.status], ["insufficient_storage", 507]);
    assert.equal(err.message, 'Cannot write secret "db": the filesystem of /var/lib/corral/daemon/secrets is full (No space left on device); free space there and retry');
    assert.equal(err.cause instanceof Error && (err.cause as NodeJS.ErrnoException).code, "ENOSPC", "the cause is kept for the log");
    assert.equal(storageFullError(new Error("other"), "x", "/d"), undefined);
  });
});

describe("the error handler and a full disk", { timeout: 20_000 }, () => {
  const app = Fastify({ logger: false });
  installErrorHandling(app);
  app.get("/write", async () => {
    throw errno("ENOSPC");
  });
  app.get("/sqlite", async () => {
    throw sqliteFull();
  });
  app.get("/busy", async () => {
    throw new CorralError("insufficient_memory", "Cannot start a new VM: no memory", { retryAfterSeconds: 5 });
  });
  after(() => app.close());

  test("a write that hit a full disk is 507 insufficient_storage, never 500", async () => {
    for (const url of ["/write", "/sqlite"]) {
      const res = await app.inject({ method: "GET", url });
      assert.equal(res.statusCode, 507, url);
      assert.deepEqual(res.json(), {
        error: "Cannot complete the request: the server's storage is full (No space left on device); free space on the host and retry",
        code: "insufficient_storage",
      });
    }
  });

  test("a refusal that passes by itself carries Retry-After", async () => {
    const res = await app.inject({ method: "GET", url: "/busy" });
    assert.equal(res.statusCode, 429);
    assert.equal(res.headers["retry-after"], "5");
    assert.deepEqual(res.json(), { error: "Cannot start a new VM: no memory", code: "insufficient_memory" });
  });
});
