// How the daemon turns /cp and /fs/watch query strings into what it asks of the guest.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { downloadSpecFromQuery, uploadSpecFromQuery } from "../../src/daemon/routes/files.ts";
import { watchSpecFromQuery } from "../../src/daemon/routes/fs.ts";
import { CorralError } from "../../src/protocol/errors.ts";

function rejects(fn: () => unknown, code: string, message: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof CorralError && err.code === code && message.test(err.message));
}

describe("copy queries", () => {
  test("the TS SDK's binary upload writes exactly at path, with ownership", () => {
    assert.deepEqual(uploadSpecFromQuery({ path: "/tmp/f", mode: "binary", uid: 1000, gid: 1000, permissions: "0600" }, "application/octet-stream"), {
      path: "/tmp/f",
      format: "file",
      placement: "exact",
      exclude: [],
      uid: 1000,
      gid: 1000,
      permissions: 0o600,
    });
  });

  test("Go's cp-v1 tar upload carries the source name, copy_contents and excludes", () => {
    const spec = uploadSpecFromQuery(
      { path: "/work", mode: "cp-v1-tar", copy_semantics: "cp-v1", source_name: "src", source_type: "directory", copy_contents: true, exclude: ["*.log", " ", "node_modules"] },
      "application/x-tar",
    );
    assert.deepEqual(spec, { path: "/work", format: "tar", placement: "cp-v1", exclude: ["*.log", "node_modules"], sourceName: "src", copyContents: true });
  });

  test("Go's WriteFile sends no mode: octet-stream means a file", () => {
    assert.equal(uploadSpecFromQuery({ path: "/f" }, "application/octet-stream").format, "file");
  });

  test("cp-v1 names and types are checked", () => {
    rejects(() => uploadSpecFromQuery({ path: "/w", mode: "cp-v1-binary", source_type: "directory" }, undefined), "invalid_request", /source_type/);
    rejects(() => uploadSpecFromQuery({ path: "/w", mode: "cp-v1-binary", source_name: "../x" }, undefined), "invalid_request", /source_name/);
    rejects(() => uploadSpecFromQuery({ path: "/w", mode: "x" }, undefined), "invalid_request", /invalid mode: x/);
  });

  test("downloads: Go's recursive mode, ReadFile by Accept", () => {
    assert.deepEqual(downloadSpecFromQuery({ path: "/etc", mode: "cp-v1-recursive", exclude: "*.conf" }, "application/octet-stream, application/x-tar"), {
      path: "/etc",
      format: "auto",
      layout: "contents",
      cpV1: true,
      exclude: ["*.conf"],
    });
    assert.equal(downloadSpecFromQuery({ path: "/f" }, "application/octet-stream").format, "file");
  });
});

describe("watch queries", () => {
  test("repeated keys, durations, one_shot and Last-Event-ID", () => {
    const spec = watchSpecFromQuery(
      {
        paths: ["/a", "/b"],
        events: ["create", "write", "create"],
        patterns: "*.go",
        debounce: "100ms",
        timeout: "1m30s",
        one_shot: true,
        max_events: 9,
        recursive: true,
        uid: 1000,
      },
      "17",
    );
    assert.deepEqual(spec, {
      paths: ["/a", "/b"],
      recursive: true,
      events: ["create", "write"],
      patterns: ["*.go"],
      debounceMs: 100,
      timeoutMs: 90_000,
      maxEvents: 1,
      lastEventId: 17,
      uid: 1000,
    });
  });

  test("defaults: no limit, no timeout, ids from 1", () => {
    const spec = watchSpecFromQuery({ paths: "/tmp" }, undefined);
    assert.equal(spec.maxEvents, 0);
    assert.equal(spec.timeoutMs, 0);
    assert.equal(spec.lastEventId, 0);
    assert.deepEqual(spec.events, []);
  });

  test("bad input names the field", () => {
    rejects(() => watchSpecFromQuery({}, undefined), "invalid_request", /Missing query parameter "paths"/);
    rejects(() => watchSpecFromQuery({ paths: "/t", timeout: "soon" }, undefined), "invalid_duration", /timeout "soon"/);
    rejects(() => watchSpecFromQuery({ paths: "/t", debounce: "-1s" }, undefined), "invalid_duration", /debounce/);
    rejects(() => watchSpecFromQuery({ paths: "/t" }, "abc"), "invalid_request", /Last-Event-ID/);
  });
});
