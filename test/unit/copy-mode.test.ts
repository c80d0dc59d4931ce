import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { decodeSourceName, downloadShape, encodeSourceName, isSourceName, mediaTypes, uploadShape } from "../../src/protocol/copy-mode.ts";
import { CorralError } from "../../src/protocol/errors.ts";
import { headerJson } from "../../src/protocol/agent.ts";
import { formatOctalMode, parseOctalMode } from "../../src/protocol/files.ts";

function rejectsMode(fn: () => unknown, mode: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CorralError);
    assert.equal(err.status, 400);
    assert.equal(err.code, "invalid_request");
    // Slicer's Go SDK looks for exactly this text to fall back to an older mode.
    assert.ok(err.message.includes(`invalid mode: ${mode}`), err.message);
    return true;
  });
}

describe("upload modes", () => {
  test("each mode maps to a format and a placement", () => {
    assert.deepEqual(uploadShape("binary", undefined), { format: "file", placement: "exact" });
    assert.deepEqual(uploadShape("tar", undefined), { format: "tar", placement: "exact" });
    assert.deepEqual(uploadShape("cp-v1-binary", "application/octet-stream"), { format: "file", placement: "cp-v1" });
    assert.deepEqual(uploadShape("cp-v1-tar", "application/x-tar"), { format: "tar", placement: "cp-v1" });
  });

  test("without a mode, Content-Type decides; neither type means tar", () => {
    assert.equal(uploadShape(undefined, "application/octet-stream").format, "file");
    assert.equal(uploadShape("", "Application/Octet-Stream; charset=binary").format, "file");
    assert.equal(uploadShape(undefined, "application/x-tar").format, "tar");
    assert.equal(uploadShape(undefined, undefined).format, "tar");
    assert.equal(uploadShape(undefined, "application/x-www-form-urlencoded").format, "tar");
  });

  test("unknown modes, and recursive (a download mode), are refused with Slicer's text", () => {
    rejectsMode(() => uploadShape("x", undefined), "x");
    rejectsMode(() => uploadShape("cp-v1-recursive", undefined), "cp-v1-recursive");
    rejectsMode(() => uploadShape("BINARY", undefined), "BINARY");
  });
});

describe("download modes", () => {
  test("legacy modes name the tar's top entry after the directory; cp-v1 makes entries relative", () => {
    assert.deepEqual(downloadShape("binary", undefined), { format: "file", layout: "named", cpV1: false });
    assert.deepEqual(downloadShape("tar", undefined), { format: "tar", layout: "named", cpV1: false });
    assert.deepEqual(downloadShape("cp-v1-binary", undefined), { format: "file", layout: "contents", cpV1: true });
    assert.deepEqual(downloadShape("cp-v1-tar", undefined), { format: "tar", layout: "contents", cpV1: true });
    assert.deepEqual(downloadShape("cp-v1-recursive", undefined), { format: "auto", layout: "contents", cpV1: true });
  });

  test("without a mode, Accept decides; both types mean whichever fits; neither means tar", () => {
    assert.equal(downloadShape(undefined, "application/octet-stream").format, "file");
    assert.equal(downloadShape(undefined, "application/x-tar").format, "tar");
    assert.equal(downloadShape(undefined, "application/octet-stream, application/x-tar").format, "auto");
    assert.equal(downloadShape(undefined, "*/*").format, "tar");
    assert.equal(downloadShape(undefined, undefined).format, "tar");
  });

  test("unknown modes are refused with Slicer's text", () => {
    rejectsMode(() => downloadShape("zip", undefined), "zip");
  });
});

describe("copy helpers", () => {
  test("media types drop parameters and case", () => {
    assert.deepEqual(mediaTypes("Application/X-Tar; q=0.9, application/octet-stream"), ["application/x-tar", "application/octet-stream"]);
    assert.deepEqual(mediaTypes(undefined), []);
  });

  test("source names are one path element", () => {
    for (const good of ["a.txt", "日本語 file", "..a", "a.."]) assert.equal(isSourceName(good), true, good);
    for (const bad of ["", ".", "..", "a/b", "a\\b", "a\0"]) assert.equal(isSourceName(bad), false, JSON.stringify(bad));
  });

  test("source names travel as base64url without padding", () => {
    assert.equal(encodeSourceName("a"), "YQ");
    assert.equal(encodeSourceName("dir ?>"), "ZGlyID8-");
    for (const name of ["a", "ünïcödé 目录", "☃.bin", "x".repeat(255)]) assert.equal(decodeSourceName(encodeSourceName(name)), name);
  });

  test("octal modes", () => {
    assert.equal(parseOctalMode("0644"), 0o644);
    assert.equal(parseOctalMode("755"), 0o755);
    assert.equal(parseOctalMode("0o600"), 0o600);
    assert.equal(parseOctalMode("4755"), 0o4755);
    for (const bad of ["", "0888", "rw-r--r--", "12345", "-1"]) assert.equal(parseOctalMode(bad), undefined, bad);
    assert.equal(formatOctalMode(0o100644), "0644");
    assert.equal(formatOctalMode(0o40755), "0755");
    assert.equal(formatOctalMode(0o104755), "4755");
  });

  test("header JSON is ASCII (HTTP/2 drops headers with other characters)", () => {
    const text = headerJson({ path: "/tmp/日本/☃ é" });
    assert.match(text, /^[\x20-\x7e]+$/);
    assert.deepEqual(JSON.parse(text), { path: "/tmp/日本/☃ é" });
  });
});
