// The strict checks on names and values that reach host paths, guest files and process signals.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ringBytesFor } from "../../../src/daemon/jobs/background-jobs.ts";
import { secretChange } from "../../../src/daemon/routes/secrets.ts";
import { CorralError } from "../../../src/protocol/errors.ts";
import { DEFAULT_RING_BYTES, assertExecId, isExecId, parseSignal, parseWaitSeconds } from "../../../src/protocol/jobs.ts";
import { checkSecretData, isSecretName, parsePermissions } from "../../../src/protocol/secrets.ts";

function code(expected: string): (err: unknown) => boolean {
  return (err) => err instanceof CorralError && err.code === expected;
}

describe("exec ids", () => {
  test("only ex_ and 16 lower-case hex digits pass", () => {
    assert.equal(isExecId("ex_0123456789abcdef"), true);
    for (const bad of ["ex_0123456789ABCDEF", "ex_0123", "0123456789abcdef", "ex_0123456789abcdef0", "../ex_0123456789abcdef", "ex_0123456789abcde/", ""]) {
      assert.equal(isExecId(bad), false, bad);
    }
    assert.throws(() => assertExecId("../../etc/passwd"), code("invalid_name"));
  });
});

describe("signals", () => {
  test("names with or without SIG, any case, and numbers become Node's names", () => {
    assert.equal(parseSignal("TERM"), "SIGTERM");
    assert.equal(parseSignal("SIGKILL"), "SIGKILL");
    assert.equal(parseSignal("int"), "SIGINT");
    assert.equal(parseSignal(9), "SIGKILL");
    assert.equal(parseSignal("15"), "SIGTERM");
    assert.equal(parseSignal("usr1"), "SIGUSR1");
  });

  test("anything else is invalid_request naming the value", () => {
    for (const bad of ["NOPE", "0", "32", "-9", "", "SIG", 64, "TERM;rm"]) {
      assert.throws(
        () => parseSignal(bad),
        (err: unknown) => code("invalid_request")(err) && (err as Error).message.includes("Invalid signal"),
        String(bad),
      );
    }
  });
});

describe("wait-exit timeout", () => {
  test("whole seconds; default 30", () => {
    assert.equal(parseWaitSeconds(undefined), 30);
    assert.equal(parseWaitSeconds("0"), 0);
    assert.equal(parseWaitSeconds("120"), 120);
    for (const bad of ["1.5", "30s", "-1", "abc", "86401"]) assert.throws(() => parseWaitSeconds(bad), code("invalid_request"), bad);
  });
});

describe("ring sizes", () => {
  test("0 or nothing is the default; otherwise within bounds", () => {
    assert.equal(ringBytesFor(undefined), DEFAULT_RING_BYTES);
    assert.equal(ringBytesFor(0), DEFAULT_RING_BYTES);
    assert.equal(ringBytesFor(4096), 4096);
    assert.throws(() => ringBytesFor(100), code("invalid_request"));
    assert.throws(() => ringBytesFor(64 * 1024 * 1024), code("invalid_request"));
  });
});

describe("secret names", () => {
  test("letters, digits, dot, underscore, dash; a letter or digit first; no ..", () => {
    for (const good of ["a", "db-password", "TLS_cert.pem", "x".repeat(128), "0"]) assert.equal(isSecretName(good), true, good);
    for (const bad of ["", "../x", "..", ".env", "-x", "_x", "a/b", "a\\b", "a b", "a..b", "x".repeat(129), "é", "a\0b"]) assert.equal(isSecretName(bad), false, bad);
  });
});

describe("secret permissions", () => {
  test("three octal digits, with or without a leading 0", () => {
    assert.equal(parsePermissions("600"), "0600");
    assert.equal(parsePermissions("0644"), "0644");
    assert.equal(parsePermissions("0400"), "0400");
    for (const bad of ["999", "abc", "4755", "0o600", "", "6000", "77", "-600"]) assert.throws(() => parsePermissions(bad), code("invalid_request"), bad);
  });
});

describe("secret data", () => {
  test("standard base64, padding optional, line breaks allowed", () => {
    assert.equal(checkSecretData("aGVsbG8="), "aGVsbG8=");
    assert.equal(checkSecretData("aGVsbG8"), "aGVsbG8");
    assert.equal(checkSecretData("aGVs\nbG8=\n"), "aGVsbG8=");
    assert.equal(checkSecretData(""), "");
  });

  test("anything else is a 400 that does not quote the data", () => {
    for (const bad of ["not base64!", "aGVsbG8=x", "Q", "aGVsbG8-_", "aGVs bG8=", "aGVsbG8==="]) {
      assert.throws(
        () => checkSecretData(bad),
        (err: unknown) => code("invalid_request")(err) && !(err as Error).message.includes(bad),
        bad,
      );
    }
  });

  test("over 4 MiB decoded is payload_too_large", () => {
    assert.throws(() => checkSecretData(Buffer.alloc(4 * 1024 * 1024 + 1).toString("base64")), code("payload_too_large"));
    assert.doesNotThrow(() => checkSecretData(Buffer.alloc(4 * 1024 * 1024).toString("base64")));
  });

  test("a PATCH with empty data keeps the content; permissions are normalised", () => {
    assert.deepEqual(secretChange({ data: "" }), {});
    assert.deepEqual(secretChange({ data: "eA==", permissions: "644", uid: 1 }), { data: Buffer.from("x"), permissions: "0644", uid: 1 });
  });
});
